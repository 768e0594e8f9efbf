package deploy_test

// The Helm chart (deploy/helm/soci-indexer) checked against the binaries it
// runs, as compose_test.go does for docker-compose.yml. Names are never
// copied into this file: the environment variables a container may use come
// from internal/config (serve, and the webhook, which reads the same settings)
// and from the built binary's --help (the root flag and `migrate`), so a
// rename in the code fails here instead of leaving the chart behind.
// TestHelmChartRunsTheBinaries then runs each rendered container as a real
// process against the machine's NATS and Postgres, with the Secrets and
// ConfigMaps the chart renders laid out as the kubelet would mount them.

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/soci-indexer/soci-indexer/internal/config"
	"github.com/soci-indexer/soci-indexer/internal/demoimage"
	embeddedregistry "github.com/soci-indexer/soci-indexer/internal/embedded/registry"
	"github.com/soci-indexer/soci-indexer/internal/registryclient"
	"github.com/soci-indexer/soci-indexer/internal/testpg"
	"github.com/soci-indexer/soci-indexer/internal/testproc"
	"github.com/soci-indexer/soci-indexer/internal/testsupport"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
	"github.com/soci-indexer/soci-indexer/pkg/webhook"
)

const chartDir = "helm/soci-indexer"

// helmBinary finds Helm v4: $SOCI_HELM (scripts/test sets it from
// scripts/ensure-helm), else helm on PATH. Without it the test fails when
// CI is set and is skipped otherwise.
func helmBinary(t *testing.T) string {
	t.Helper()
	path := os.Getenv("SOCI_HELM")
	if path == "" {
		path, _ = exec.LookPath("helm")
	}
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("helm is needed: scripts/ensure-helm installs it (SOCI_HELM=$(scripts/ensure-helm))")
		}
		t.Skip("no helm: run SOCI_HELM=$(scripts/ensure-helm) go test ./deploy")
	}
	out, err := exec.Command(path, "version", "--template", "{{.Version}}").Output()
	if err != nil || !strings.HasPrefix(string(out), "v4") {
		t.Fatalf("%s is not Helm v4 (%q, %v)", path, out, err)
	}
	return path
}

func helm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(helmBinary(t), args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// valuesFiles are the chart's CI values: the least an install needs, and
// every optional part on.
func valuesFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil || len(files) < 2 {
		t.Fatalf("want at least two values files in %s/ci, got %v (%v)", chartDir, files, err)
	}
	return files
}

func TestHelmLint(t *testing.T) {
	for _, f := range valuesFiles(t) {
		if out, err := helm(t, "lint", "--strict", chartDir, "-f", f); err != nil {
			t.Errorf("%s: %v\n%s", f, err, out)
		}
	}
}

// object is one rendered manifest.
type object struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec       yaml.Node         `yaml:"spec"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
}

type rendered struct {
	objects []object
}

func render(t *testing.T, args ...string) rendered {
	t.Helper()
	out, err := helm(t, append([]string{"template", "rel", chartDir}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var r rendered
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("rendered chart: %v", err)
		}
		if o.Kind != "" {
			r.objects = append(r.objects, o)
		}
	}
	return r
}

func (r rendered) all(kind string) []object {
	var out []object
	for _, o := range r.objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (r rendered) get(kind, name string) (object, bool) {
	for _, o := range r.all(kind) {
		if o.Metadata.Name == name {
			return o, true
		}
	}
	return object{}, false
}

func spec[T any](t *testing.T, o object) T {
	t.Helper()
	var s T
	if err := o.Spec.Decode(&s); err != nil {
		t.Fatalf("%s %s: spec: %v", o.Kind, o.Metadata.Name, err)
	}
	return s
}

type podTemplate struct {
	Metadata struct {
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec podSpec `yaml:"spec"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int        `yaml:"terminationGracePeriodSeconds"`
	InitContainers                []container `yaml:"initContainers"`
	Containers                    []container `yaml:"containers"`
	Volumes                       []volume    `yaml:"volumes"`
}

type workloadSpec struct {
	Replicas *int `yaml:"replicas"`
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template podTemplate `yaml:"template"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *keyRef `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type keyRef struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
}

type probe struct {
	HTTPGet struct {
		Path string    `yaml:"path"`
		Port yaml.Node `yaml:"port"`
	} `yaml:"httpGet"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
		Items      []struct {
			Key  string `yaml:"key"`
			Path string `yaml:"path"`
		} `yaml:"items"`
	} `yaml:"secret"`
	EmptyDir any `yaml:"emptyDir"`
}

func (c container) envNames() []string {
	var out []string
	for _, e := range c.Env {
		out = append(out, e.Name)
	}
	return out
}

func (c container) secretRef(env string) *keyRef {
	for _, e := range c.Env {
		if e.Name == env && e.ValueFrom != nil {
			return e.ValueFrom.SecretKeyRef
		}
	}
	return nil
}

// port resolves a probe's or Service's port (a number or a port name).
func (c container) port(t *testing.T, n yaml.Node) int {
	t.Helper()
	if p, err := strconv.Atoi(n.Value); err == nil {
		return p
	}
	for _, p := range c.Ports {
		if p.Name == n.Value {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port %q", c.Name, n.Value)
	return 0
}

// env resolves the container's environment as the kubelet would: plain
// values, and secretKeyRefs from the Secrets the chart renders. A reference
// to a Secret the chart does not render (an existingSecret) resolves to
// placeholder(ref). Paths under a mounted volume are moved under root.
func (r rendered) env(t *testing.T, c container, root string, placeholder func(keyRef) string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			v := e.Value
			for _, m := range c.VolumeMounts {
				if root != "" && strings.HasPrefix(v, m.MountPath+"/") {
					v = filepath.Join(root, m.Name, strings.TrimPrefix(v, m.MountPath+"/"))
				}
			}
			out[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			ref := *e.ValueFrom.SecretKeyRef
			if s, ok := r.get("Secret", ref.Name); ok {
				raw, has := s.Data[ref.Key]
				if !has {
					t.Fatalf("%s: %s: Secret %s has no key %s", c.Name, e.Name, ref.Name, ref.Key)
				}
				v, err := base64.StdEncoding.DecodeString(raw)
				if err != nil {
					t.Fatal(err)
				}
				out[e.Name] = string(v)
			} else {
				out[e.Name] = placeholder(ref)
			}
		default:
			t.Fatalf("%s: %s: only values and secretKeyRefs are understood here", c.Name, e.Name)
		}
	}
	return out
}

// mountVolumes writes the chart's ConfigMaps and Secrets mounted by c
// under root/<volume name>, as the kubelet would mount them.
func (r rendered) mountVolumes(t *testing.T, pod podSpec, c container, root string) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		var vol *volume
		for i := range pod.Volumes {
			if pod.Volumes[i].Name == m.Name {
				vol = &pod.Volumes[i]
			}
		}
		if vol == nil {
			t.Fatalf("%s mounts %s, which is no volume of the pod", c.Name, m.Name)
		}
		dir := filepath.Join(root, m.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if vol.ConfigMap != nil {
			cm, ok := r.get("ConfigMap", vol.ConfigMap.Name)
			if !ok {
				t.Fatalf("volume %s: no ConfigMap %s in the chart", m.Name, vol.ConfigMap.Name)
			}
			for k, v := range cm.Data {
				if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// knownEnv are the environment variables one command of a built binary
// reads: those its --help names as "(env NAME)", plus extra.
func knownEnv(t *testing.T, bin string, args []string, extra ...string) map[string]bool {
	t.Helper()
	cmd := exec.Command(bin, append(slices.Clone(args), "--help")...)
	cmd.Env = testproc.BaseEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v --help: %v\n%s", bin, args, err, out)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`\(env ([A-Z0-9_]+)\)`).FindAllStringSubmatch(string(out), -1) {
		known[m[1]] = true
	}
	for _, e := range extra {
		known[e] = true
	}
	return known
}

// serveEnv: every setting of internal/config, and what `indexer serve
// --help` names (the root flags).
func serveEnv(t *testing.T, indexer string) map[string]bool {
	t.Helper()
	var settings []string
	for _, s := range config.Settings() {
		settings = append(settings, s.Env)
	}
	return knownEnv(t, indexer, []string{"serve"}, settings...)
}

// webhookEnv are the variables cmd/webhook looks up: its settings, and
// the log level it reads as indexer's root flag does.
func webhookEnv(t *testing.T) map[string]bool {
	t.Helper()
	read := map[string]bool{"INDEXER_LOG_LEVEL": true}
	if _, err := webhookConfig(t, func(k string) (string, bool) { read[k] = true; return "", false }); err != nil {
		t.Fatal(err)
	}
	return read
}

// webhookConfig loads the webhook's settings as cmd/webhook does.
func webhookConfig(t *testing.T, lookupEnv func(string) (string, bool)) (config.Config, error) {
	t.Helper()
	var cfg config.Config
	fs := newFlagSet()
	loader := config.RegisterWebhook(fs, &cfg, lookupEnv)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := loader.Resolve(); err != nil {
		return cfg, err
	}
	return cfg, cfg.ValidateWebhook()
}

func indexerConfig(t *testing.T, env map[string]string) (config.Config, error) {
	t.Helper()
	var cfg config.Config
	fs := newFlagSet()
	loader := config.RegisterServe(fs, &cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	return cfg, loader.Load()
}

// effectiveQueue fills the zero fields as pkg/queue does.
func effectiveQueue(c queue.Config) queue.Config {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.Stream, queue.DefaultStream)
	def(&c.SubjectPrefix, queue.DefaultSubjectPrefix)
	def(&c.DLQStream, queue.DefaultDLQStream)
	def(&c.DLQPrefix, queue.DefaultDLQPrefix)
	def(&c.Consumer, queue.DefaultConsumer)
	if c.MaxDeliver == 0 {
		c.MaxDeliver = queue.DefaultMaxDeliver
	}
	if c.AckWait == 0 {
		c.AckWait = queue.DefaultAckWait
	}
	return c
}

// chart is the parts of one rendering the checks look at.
type chart struct {
	r                rendered
	worker, webhook  object
	workerSpec       workloadSpec
	webhookSpec      workloadSpec
	workerContainer  container
	webhookContainer container
	migrate          container // the Job's or the init container
	migratePod       podSpec
}

func parseChart(t *testing.T, r rendered) chart {
	t.Helper()
	c := chart{r: r}
	for _, d := range r.all("Deployment") {
		s := spec[workloadSpec](t, d)
		if len(s.Template.Spec.Containers) != 1 {
			t.Fatalf("Deployment %s: %d containers, want 1", d.Metadata.Name, len(s.Template.Spec.Containers))
		}
		switch s.Template.Metadata.Labels["app.kubernetes.io/component"] {
		case "worker":
			c.worker, c.workerSpec, c.workerContainer = d, s, s.Template.Spec.Containers[0]
		case "webhook":
			c.webhook, c.webhookSpec, c.webhookContainer = d, s, s.Template.Spec.Containers[0]
		}
	}
	if c.worker.Kind == "" || c.webhook.Kind == "" {
		t.Fatal("the chart must render a worker and a webhook Deployment")
	}
	jobs := r.all("Job")
	for _, ic := range c.workerSpec.Template.Spec.InitContainers {
		if ic.Name == "migrate" {
			c.migrate, c.migratePod = ic, c.workerSpec.Template.Spec
		}
	}
	for _, j := range jobs {
		s := spec[workloadSpec](t, j)
		if hook := j.Metadata.Annotations["helm.sh/hook"]; !strings.Contains(hook, "pre-upgrade") {
			t.Errorf("Job %s: hook %q, want it to run before upgrades", j.Metadata.Name, hook)
		}
		c.migrate, c.migratePod = s.Template.Spec.Containers[0], s.Template.Spec
	}
	if c.migrate.Name == "" {
		t.Fatal("no migration step: neither a Job nor an init container named migrate")
	}
	return c
}

// TestHelmChartMatchesBinaries renders the chart with each CI values file
// and checks every name, port, path and duration against the code.
func TestHelmChartMatchesBinaries(t *testing.T) {
	// The chart runs the Dockerfile's worker image: the indexer built
	// without the embedded registry.
	bin := testproc.Build(t, "-tags=noregistry", "./cmd/indexer")
	indexer := filepath.Join(bin, "indexer")
	serveKnown := serveEnv(t, indexer)
	migrateKnown := knownEnv(t, indexer, []string{"migrate"})
	webhookKnown := webhookEnv(t)
	if !migrateKnown["INDEXER_LOG_LEVEL"] || len(migrateKnown) < 2 {
		t.Fatalf("indexer migrate --help names %v: the (env NAME) convention changed; update knownEnv", migrateKnown)
	}

	for _, f := range valuesFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c := parseChart(t, render(t, "-f", f))
			// Values for the operator's own Secrets (existingSecret).
			placeholder := func(ref keyRef) string {
				switch {
				case strings.Contains(ref.Key, "url"), strings.Contains(ref.Key, "dsn"):
					return "postgres://indexer@postgres/indexer"
				case strings.Contains(ref.Key, "auth"):
					return "registry.example=robot:secret"
				default:
					return "placeholder-token"
				}
			}
			checkWorker(t, c, serveKnown, placeholder)
			checkMigrate(t, c, migrateKnown)
			checkWebhook(t, c, webhookKnown, placeholder)
			checkQueueAgreement(t, c, placeholder)
			checkSelectors(t, c)
		})
	}
}

func checkWorker(t *testing.T, c chart, known map[string]bool, placeholder func(keyRef) string) {
	t.Helper()
	w := c.workerContainer
	if !slices.Equal(w.Args, []string{"serve"}) {
		t.Errorf("worker args %v, want [serve]", w.Args)
	}
	for _, e := range w.envNames() {
		if !known[e] {
			t.Errorf("worker: %s is read by no setting of `indexer serve`", e)
		}
	}
	root := t.TempDir()
	c.r.mountVolumes(t, c.workerSpec.Template.Spec, w, root)
	cfg, err := indexerConfig(t, c.r.env(t, w, root, placeholder))
	if err != nil {
		t.Fatalf("worker settings as rendered: %v", err)
	}
	if cfg.UseEmbedded() {
		t.Error("the worker would run all-in-one")
	}
	if ref := w.secretRef("INDEXER_DATABASE_URL"); ref == nil {
		t.Error("the database URL is not read from a Secret")
	}
	port := listenPort(t, cfg.Listen)
	if got := strconv.Itoa(w.port(t, yaml.Node{Value: "http"})); got != port {
		t.Errorf("worker listens on %s, its http port is %s", port, got)
	}
	for name, p := range map[string]*probe{"liveness": w.LivenessProbe, "readiness": w.ReadinessProbe} {
		if p == nil {
			t.Errorf("worker: no %s probe", name)
			continue
		}
		if got := strconv.Itoa(w.port(t, p.HTTPGet.Port)); got != port {
			t.Errorf("worker %s probe on port %s, the worker listens on %s", name, got, port)
		}
	}
	// The probe paths are the ones `indexer serve` answers: see
	// TestHelmChartRunsTheBinaries, which asks the running binary.
	grace := c.workerSpec.Template.Spec.TerminationGracePeriodSeconds
	// After the shutdown grace the worker closes its HTTP server (up to 5 s)
	// and its connections.
	if min := cfg.ShutdownGrace + 5*time.Second; grace == nil || time.Duration(*grace)*time.Second <= min {
		t.Errorf("worker terminationGracePeriodSeconds %s, want more than shutdown grace %s + 5s", seconds(grace), cfg.ShutdownGrace)
	}
	autoscaled := len(c.r.all("ScaledObject")) > 0
	if autoscaled && c.workerSpec.Replicas != nil {
		t.Error("the worker Deployment sets replicas although KEDA scales it")
	}
	if !autoscaled && c.workerSpec.Replicas == nil {
		t.Error("the worker Deployment has no replicas")
	}
}

func checkMigrate(t *testing.T, c chart, known map[string]bool) {
	t.Helper()
	m := c.migrate
	if !slices.Equal(m.Args, []string{"migrate"}) {
		t.Errorf("migration args %v, want [migrate]", m.Args)
	}
	if m.Image != c.workerContainer.Image {
		t.Errorf("migrations run %s, the workers %s", m.Image, c.workerContainer.Image)
	}
	var dsnEnv []string
	for _, e := range m.envNames() {
		if !known[e] {
			t.Errorf("migration: %s is read by no flag of `indexer migrate`", e)
		}
		if ref := m.secretRef(e); ref != nil {
			dsnEnv = append(dsnEnv, e)
			if want := c.workerContainer.secretRef("INDEXER_DATABASE_URL"); want == nil || *ref != *want {
				t.Errorf("migration reads the database from %+v, the workers from %+v", ref, want)
			}
		}
	}
	if len(dsnEnv) != 1 {
		t.Errorf("migration: %d variables from the database Secret, want 1", len(dsnEnv))
	}
}

func checkWebhook(t *testing.T, c chart, known map[string]bool, placeholder func(keyRef) string) {
	t.Helper()
	w := c.webhookContainer
	for _, e := range w.envNames() {
		if !known[e] {
			t.Errorf("webhook: %s is not a setting cmd/webhook reads", e)
		}
	}
	env := c.r.env(t, w, "", placeholder)
	settings, err := webhookConfig(t, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("webhook settings as rendered: %v", err)
	}
	if settings.WebhookConfig().Distribution.Token == "" || w.secretRef("INDEXER_WEBHOOK_SECRET") == nil {
		t.Error("the webhook's token does not come from a Secret")
	}
	port := listenPort(t, settings.Listen)
	if got := strconv.Itoa(w.port(t, yaml.Node{Value: "http"})); got != port {
		t.Errorf("webhook listens on %s, its http port is %s", port, got)
	}
	for name, want := range map[string]string{"liveness": webhook.PathHealthz, "readiness": webhook.PathReadyz} {
		p := map[string]*probe{"liveness": w.LivenessProbe, "readiness": w.ReadinessProbe}[name]
		if p == nil {
			t.Errorf("webhook: no %s probe", name)
			continue
		}
		if p.HTTPGet.Path != want || strconv.Itoa(w.port(t, p.HTTPGet.Port)) != port {
			t.Errorf("webhook %s probe %s on %s, want %s on %s", name, p.HTTPGet.Path, p.HTTPGet.Port.Value, want, port)
		}
	}
	grace := c.webhookSpec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil || time.Duration(*grace)*time.Second <= settings.ShutdownTimeout {
		t.Errorf("webhook terminationGracePeriodSeconds %s, want more than its shutdown timeout %s", seconds(grace), settings.ShutdownTimeout)
	}
	svc, ok := c.r.get("Service", c.webhook.Metadata.Name)
	if !ok {
		t.Fatal("no Service for the webhook")
	}
	s := spec[serviceSpec](t, svc)
	if len(s.Ports) != 1 || strconv.Itoa(w.port(t, s.Ports[0].TargetPort)) != port {
		t.Errorf("webhook Service ports %+v do not reach port %s", s.Ports, port)
	}
}

type serviceSpec struct {
	Selector map[string]string `yaml:"selector"`
	Ports    []struct {
		Name       string    `yaml:"name"`
		Port       int       `yaml:"port"`
		TargetPort yaml.Node `yaml:"targetPort"`
	} `yaml:"ports"`
}

// checkQueueAgreement: webhook and workers name the same stream, subjects,
// dead letters and consumer with the same limits, and KEDA watches them.
func checkQueueAgreement(t *testing.T, c chart, placeholder func(keyRef) string) {
	t.Helper()
	wenv := c.r.env(t, c.webhookContainer, "", placeholder)
	settings, err := webhookConfig(t, func(k string) (string, bool) { v, ok := wenv[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	c.r.mountVolumes(t, c.workerSpec.Template.Spec, c.workerContainer, root)
	cfg, err := indexerConfig(t, c.r.env(t, c.workerContainer, root, placeholder))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATSURL != settings.NATSURL {
		t.Errorf("workers use NATS %s, the webhook %s", cfg.NATSURL, settings.NATSURL)
	}
	// The consumer's limits are the workers' alone: the webhook never
	// creates or changes the consumer.
	wq := effectiveQueue(settings.QueueConfig())
	iq := effectiveQueue(cfg.QueueConfig())
	if wq.Stream != iq.Stream || wq.SubjectPrefix != iq.SubjectPrefix || wq.DLQStream != iq.DLQStream ||
		wq.DLQPrefix != iq.DLQPrefix || wq.Consumer != iq.Consumer || wq.Replicas != iq.Replicas {
		t.Errorf("queue: webhook %+v, workers %+v", wq, iq)
	}
	for _, so := range c.r.all("ScaledObject") {
		s := spec[struct {
			ScaleTargetRef struct {
				Name string `yaml:"name"`
			} `yaml:"scaleTargetRef"`
			Triggers []struct {
				Type     string            `yaml:"type"`
				Metadata map[string]string `yaml:"metadata"`
			} `yaml:"triggers"`
		}](t, so)
		if s.ScaleTargetRef.Name != c.worker.Metadata.Name {
			t.Errorf("ScaledObject scales %s, the workers are %s", s.ScaleTargetRef.Name, c.worker.Metadata.Name)
		}
		if len(s.Triggers) != 1 || s.Triggers[0].Type != "nats-jetstream" {
			t.Fatalf("ScaledObject triggers %+v, want one nats-jetstream", s.Triggers)
		}
		md := s.Triggers[0].Metadata
		if md["stream"] != iq.Stream || md["consumer"] != iq.Consumer {
			t.Errorf("KEDA watches %s/%s, the workers consume %s/%s", md["stream"], md["consumer"], iq.Stream, iq.Consumer)
		}
		if _, _, err := net.SplitHostPort(md["natsServerMonitoringEndpoint"]); err != nil {
			t.Errorf("natsServerMonitoringEndpoint %q: want host:port", md["natsServerMonitoringEndpoint"])
		}
		if n, err := strconv.Atoi(md["lagThreshold"]); err != nil || n < 1 {
			t.Errorf("lagThreshold %q", md["lagThreshold"])
		}
	}
}

// checkSelectors: Services, PDBs and ServiceMonitors select the pods they
// are for, through ports that exist.
func checkSelectors(t *testing.T, c chart) {
	t.Helper()
	pods := map[string]workloadSpec{c.worker.Metadata.Name: c.workerSpec, c.webhook.Metadata.Name: c.webhookSpec}
	matches := func(sel map[string]string) []workloadSpec {
		var out []workloadSpec
		for _, p := range pods {
			ok := len(sel) > 0
			for k, v := range sel {
				ok = ok && p.Template.Metadata.Labels[k] == v
			}
			if ok {
				out = append(out, p)
			}
		}
		return out
	}
	for _, d := range pods {
		if len(matches(d.Selector.MatchLabels)) != 1 {
			t.Errorf("Deployment selector %v matches %d pod templates", d.Selector.MatchLabels, len(matches(d.Selector.MatchLabels)))
		}
	}
	services := map[string]serviceSpec{}
	for _, svc := range c.r.all("Service") {
		s := spec[serviceSpec](t, svc)
		services[svc.Metadata.Name] = s
		m := matches(s.Selector)
		if len(m) != 1 {
			t.Errorf("Service %s selects %d pod templates", svc.Metadata.Name, len(m))
			continue
		}
		for _, p := range s.Ports {
			m[0].Template.Spec.Containers[0].port(t, p.TargetPort)
		}
	}
	for _, pdb := range c.r.all("PodDisruptionBudget") {
		s := spec[workloadSpec](t, pdb)
		if len(matches(s.Selector.MatchLabels)) != 1 {
			t.Errorf("PodDisruptionBudget %s selects %d pod templates", pdb.Metadata.Name, len(matches(s.Selector.MatchLabels)))
		}
	}
	if len(c.r.all("PodDisruptionBudget")) == 0 {
		t.Error("no PodDisruptionBudget")
	}
	for _, sm := range c.r.all("ServiceMonitor") {
		s := spec[struct {
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Endpoints []struct {
				Port string `yaml:"port"`
				Path string `yaml:"path"`
			} `yaml:"endpoints"`
		}](t, sm)
		var target *serviceSpec
		for _, svc := range c.r.all("Service") {
			ok := true
			for k, v := range s.Selector.MatchLabels {
				ok = ok && svc.Metadata.Labels[k] == v
			}
			if ok {
				ss := services[svc.Metadata.Name]
				target = &ss
			}
		}
		if target == nil {
			t.Errorf("ServiceMonitor %s selects no Service", sm.Metadata.Name)
			continue
		}
		for _, ep := range s.Endpoints {
			found := slices.ContainsFunc(target.Ports, func(p struct {
				Name       string    `yaml:"name"`
				Port       int       `yaml:"port"`
				TargetPort yaml.Node `yaml:"targetPort"`
			}) bool {
				return p.Name == ep.Port
			})
			if !found || ep.Path != webhook.PathMetrics {
				t.Errorf("ServiceMonitor %s scrapes %s%s; the Service has no such port or the path is not %s", sm.Metadata.Name, ep.Port, ep.Path, webhook.PathMetrics)
			}
		}
	}
}

func TestHelmChartSecrets(t *testing.T) {
	t.Run("required", func(t *testing.T) {
		_, err := helm(t, "template", "rel", chartDir, "--set", "webhook.token=t")
		if err == nil || !strings.Contains(err.Error(), "database.url or database.existingSecret is required") {
			t.Errorf("no database: %v", err)
		}
		_, err = helm(t, "template", "rel", chartDir, "--set", "database.url=postgres://x@db/x")
		if err == nil || !strings.Contains(err.Error(), "webhook.token or webhook.existingSecret is required") {
			t.Errorf("no webhook token: %v", err)
		}
	})
	t.Run("existingSecret", func(t *testing.T) {
		c := parseChart(t, render(t, "--set", "database.existingSecret=mydb", "--set", "database.existingSecretKey=dsn",
			"--set", "webhook.existingSecret=myhook", "--set", "registry.existingSecret=myreg"))
		for _, check := range []struct {
			c         container
			env, name string
		}{
			{c.workerContainer, "INDEXER_DATABASE_URL", "mydb"},
			{c.workerContainer, "INDEXER_REGISTRY_AUTH", "myreg"},
			{c.webhookContainer, "INDEXER_WEBHOOK_SECRET", "myhook"},
		} {
			if ref := check.c.secretRef(check.env); ref == nil || ref.Name != check.name {
				t.Errorf("%s: %+v, want Secret %s", check.env, ref, check.name)
			}
		}
		if len(c.r.all("Secret")) != 0 {
			t.Errorf("the chart renders a Secret of its own although every secret is an existing one")
		}
	})
	t.Run("chartSecret", func(t *testing.T) {
		r := render(t, "--set", "database.url=postgres://u:p@db/x", "--set", "webhook.token=tok",
			"--set", "registry.auth[0]=a.example=u:p", "--set", "registry.auth[1]=b.example=v:q")
		c := parseChart(t, r)
		env := r.env(t, c.workerContainer, "", func(ref keyRef) string { t.Fatalf("unresolved %+v", ref); return "" })
		cfg, err := indexerConfig(t, env)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.DatabaseURL != "postgres://u:p@db/x" || !slices.Equal(cfg.RegistryAuth, []string{"a.example=u:p", "b.example=v:q"}) {
			t.Errorf("worker reads database %q and registry auth %v", cfg.DatabaseURL, cfg.RegistryAuth)
		}
	})
}

// TestHelmChartRunsTheBinaries renders the chart for this machine's NATS
// and Postgres and runs what it renders: the migration step, a worker and
// the webhook, each as its own process with exactly the rendered
// environment and mounted ConfigMaps, probed on the rendered ports and
// paths; then an image pushed to a registry that notifies the webhook
// through the rendered token is indexed by the worker.
func TestHelmChartRunsTheBinaries(t *testing.T) {
	bin := testproc.Build(t, "./cmd/indexer", "./cmd/webhook")
	dsn, _ := testpg.NewDatabase(t, "helm")
	natsURL := testsupport.MachineNATS(t)
	stream := fmt.Sprintf("HELM_%d_%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { testsupport.DeleteStreams(t, natsURL, stream, stream+"_DLQ") })
	_, workerPort, _ := net.SplitHostPort(testproc.FreeAddr(t))
	_, webhookPort, _ := net.SplitHostPort(testproc.FreeAddr(t))
	// The registry notifies the webhook; it must know the webhook's address
	// before it starts, and the worker must know the registry's.
	regAddr := testproc.FreeAddr(t)
	token := "tok-" + strconv.FormatInt(time.Now().UnixNano(), 36)

	r := render(t,
		"--set", "nats.url="+natsURL,
		"--set", "database.url="+dsn,
		"--set", "webhook.token="+token,
		"--set", "webhook.port="+webhookPort,
		"--set", "worker.port="+workerPort,
		"--set", "queue.stream="+stream,
		"--set", "queue.subject="+strings.ToLower(stream),
		"--set", "queue.ackWait=10s",
		"--set", "worker.shutdownGraceSeconds=5",
		"--set", "registry.plainHTTP[0]="+regAddr,
		"--set", "worker.config.min_layer_size=0",
		"--set", "worker.config.span_size=1048576",
	)
	c := parseChart(t, r)
	noExisting := func(ref keyRef) string { t.Fatalf("unresolved secret %+v", ref); return "" }
	run := func(name, exe string, pod podSpec, ctr container) *testproc.Proc {
		t.Helper()
		root := t.TempDir()
		r.mountVolumes(t, pod, ctr, root)
		env := testproc.BaseEnv(t)
		for k, v := range r.env(t, ctr, root, noExisting) {
			env = append(env, k+"="+v)
		}
		return testproc.Start(t, name, filepath.Join(bin, exe), ctr.Args, env)
	}
	probe := func(p *testproc.Proc, ctr container) {
		t.Helper()
		for _, pr := range []*probe{ctr.LivenessProbe, ctr.ReadinessProbe} {
			url := fmt.Sprintf("http://127.0.0.1:%d%s", ctr.port(t, pr.HTTPGet.Port), pr.HTTPGet.Path)
			if err := p.WaitHTTP(url, 30*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}

	migrate := run("migrate", "indexer", c.migratePod, c.migrate)
	if err := migrate.Wait(time.Minute); err != nil || !strings.Contains(migrate.Output(), "schema at version") {
		t.Fatalf("migration step: %v\n%s", err, migrate.Output())
	}

	hook := run("webhook", "webhook", c.webhookSpec.Template.Spec, c.webhookContainer)
	probe(hook, c.webhookContainer)
	worker := run("worker", "indexer", c.workerSpec.Template.Spec, c.workerContainer)
	probe(worker, c.workerContainer)

	reg, err := embeddedregistry.Start(context.Background(), embeddedregistry.Options{
		Addr: regAddr,
		Notifications: []embeddedregistry.Notification{{
			URL:              "http://127.0.0.1:" + webhookPort + webhook.PathDistribution,
			Headers:          http.Header{"Authorization": {"Bearer " + token}},
			IgnoreMediaTypes: []string{"application/octet-stream"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	img := pushDemoImage(t, reg.Addr(), "helm/app", "v1")

	store, err := db.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	key := db.JobKey{Registry: reg.Addr(), Repository: "helm/app", Digest: img, Tag: "v1"}
	deadline := time.Now().Add(60 * time.Second)
	for {
		job, err := store.Get(context.Background(), key)
		if err == nil && job.Status == db.JobSucceeded {
			break
		}
		if err == nil && job.Status == db.JobFailed {
			t.Fatalf("job failed: %s", job.LastError)
		}
		if time.Now().After(deadline) {
			t.Fatalf("image not indexed within 60s (last: %+v, %v)", job, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// SIGTERM: both exit cleanly well within the pods' grace periods.
	for _, p := range []struct {
		proc  *testproc.Proc
		grace *int
	}{{worker, c.workerSpec.Template.Spec.TerminationGracePeriodSeconds}, {hook, c.webhookSpec.Template.Spec.TerminationGracePeriodSeconds}} {
		if err := p.proc.Stop(time.Duration(*p.grace) * time.Second); err != nil {
			t.Errorf("%s on SIGTERM: %v", p.proc.Name, err)
		}
	}
}

func pushDemoImage(t *testing.T, registry, repository, tag string) string {
	t.Helper()
	client, err := registryclient.New(registryclient.Options{PlainHTTP: true, NoDockerConfig: true})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := client.RepositoryOf(context.Background(), registry, repository)
	if err != nil {
		t.Fatal(err)
	}
	l, err := demoimage.RandomLayer(uint64(time.Now().UnixNano()), 256<<10, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	desc, err := demoimage.Push(context.Background(), repo, tag, []demoimage.Layer{l})
	if err != nil {
		t.Fatal(err)
	}
	return desc.Digest.String()
}

func newFlagSet() *pflag.FlagSet { return pflag.NewFlagSet("serve", pflag.ContinueOnError) }

func seconds(p *int) string {
	if p == nil {
		return "unset"
	}
	return strconv.Itoa(*p)
}
