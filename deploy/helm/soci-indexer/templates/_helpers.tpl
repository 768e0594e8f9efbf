{{/* Names and labels. */}}
{{- define "soci-indexer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "soci-indexer.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "soci-indexer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "soci-indexer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: include with (list . "worker"). */}}
{{- define "soci-indexer.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "soci-indexer.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "soci-indexer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "soci-indexer.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "soci-indexer.image" -}}
{{- $img := index . 0 -}}
{{- $root := index . 1 -}}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) -}}
{{- end -}}

{{/* Secrets: the chart's own unless an existing one is named. */}}
{{- define "soci-indexer.secretName" -}}
{{- printf "%s-secrets" (include "soci-indexer.fullname" .) -}}
{{- end -}}

{{- define "soci-indexer.databaseSecret" -}}
{{- if .Values.database.existingSecret -}}
name: {{ .Values.database.existingSecret }}
key: {{ .Values.database.existingSecretKey }}
{{- else -}}
{{- if not .Values.database.url -}}
{{- fail "database.url or database.existingSecret is required" -}}
{{- end -}}
name: {{ include "soci-indexer.secretName" . }}
key: database-url
{{- end -}}
{{- end -}}

{{- define "soci-indexer.webhookSecret" -}}
{{- if .Values.webhook.existingSecret -}}
name: {{ .Values.webhook.existingSecret }}
key: {{ .Values.webhook.existingSecretKey }}
{{- else -}}
{{- if not .Values.webhook.token -}}
{{- fail "webhook.token or webhook.existingSecret is required" -}}
{{- end -}}
name: {{ include "soci-indexer.secretName" . }}
key: webhook-token
{{- end -}}
{{- end -}}

{{- define "soci-indexer.hasRegistryAuth" -}}
{{- if or .Values.registry.existingSecret .Values.registry.auth -}}true{{- end -}}
{{- end -}}

{{- define "soci-indexer.registryAuthSecret" -}}
{{- if .Values.registry.existingSecret -}}
name: {{ .Values.registry.existingSecret }}
key: {{ .Values.registry.existingSecretKey }}
{{- else -}}
name: {{ include "soci-indexer.secretName" . }}
key: registry-auth
{{- end -}}
{{- end -}}

{{/*
The queue as both sides see it. The workers derive the dead-letter stream
and prefix from a custom stream and subject (internal/config Config.QueueConfig); the
webhook derives them the same way.
*/}}
{{- define "soci-indexer.queueStream" -}}
{{- default "INDEX_JOBS" .Values.queue.stream -}}
{{- end -}}
{{- define "soci-indexer.queueConsumer" -}}
{{- default "indexer" .Values.queue.consumer -}}
{{- end -}}

{{- define "soci-indexer.workerTerminationGrace" -}}
{{- if le (int .Values.worker.terminationMarginSeconds) 0 -}}
{{- fail "worker.terminationMarginSeconds must be > 0: the pod must outlive the shutdown grace" -}}
{{- end -}}
{{- add (int .Values.worker.shutdownGraceSeconds) (int .Values.worker.terminationMarginSeconds) -}}
{{- end -}}

{{- define "soci-indexer.webhookTerminationGrace" -}}
{{- if le (int .Values.webhook.terminationMarginSeconds) 0 -}}
{{- fail "webhook.terminationMarginSeconds must be > 0: the pod must outlive the shutdown timeout" -}}
{{- end -}}
{{- add (int .Values.webhook.shutdownTimeoutSeconds) (int .Values.webhook.terminationMarginSeconds) -}}
{{- end -}}

{{/* Environment shared by the worker container and the migration step. */}}
{{- define "soci-indexer.workerEnv" -}}
- name: INDEXER_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: INDEXER_NATS_URL
  value: {{ required "nats.url is required" .Values.nats.url | quote }}
- name: INDEXER_DATABASE_URL
  valueFrom:
    secretKeyRef:
      {{- include "soci-indexer.databaseSecret" . | nindent 6 }}
- name: INDEXER_LISTEN
  value: {{ printf ":%d" (int .Values.worker.port) | quote }}
- name: INDEXER_WORKERS
  value: {{ .Values.worker.concurrency | quote }}
- name: INDEXER_LAYER_CONCURRENCY
  value: {{ .Values.worker.layerConcurrency | quote }}
- name: INDEXER_SHUTDOWN_GRACE
  value: {{ printf "%ds" (int .Values.worker.shutdownGraceSeconds) | quote }}
{{- with .Values.queue.stream }}
- name: INDEXER_STREAM
  value: {{ . | quote }}
{{- end }}
{{- with .Values.queue.subject }}
- name: INDEXER_SUBJECT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.queue.consumer }}
- name: INDEXER_CONSUMER
  value: {{ . | quote }}
{{- end }}
- name: INDEXER_STREAM_REPLICAS
  value: {{ .Values.queue.replicas | quote }}
- name: INDEXER_MAX_DELIVER
  value: {{ .Values.queue.maxDeliver | quote }}
- name: INDEXER_ACK_WAIT
  value: {{ .Values.queue.ackWait | quote }}
{{- with .Values.registry.plainHTTP }}
- name: INDEXER_PLAIN_HTTP_REGISTRIES
  value: {{ join "," . | quote }}
{{- end }}
{{- if include "soci-indexer.hasRegistryAuth" . }}
- name: INDEXER_REGISTRY_AUTH
  valueFrom:
    secretKeyRef:
      {{- include "soci-indexer.registryAuthSecret" . | nindent 6 }}
{{- end }}
{{- if .Values.registry.dockerConfigSecret }}
- name: INDEXER_DOCKER_CONFIG
  value: /etc/soci-indexer/docker/config.json
{{- end }}
{{- if .Values.registry.caSecret }}
- name: INDEXER_REGISTRY_CA_FILE
  value: /etc/soci-indexer/ca/ca.crt
{{- end }}
{{- if .Values.worker.config }}
- name: INDEXER_CONFIG
  value: /etc/soci-indexer/config/config.yaml
{{- end }}
{{- end -}}
