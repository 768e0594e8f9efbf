package webhook

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// cloudEvent is a CloudEvents 1.0 event, with the extensions we use.
type cloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	DataBase64      string          `json:"data_base64"`
	// Operator is Harbor's extension attribute.
	Operator string `json:"operator"`
}

// data is the event's payload as JSON.
func (ce cloudEvent) data() (json.RawMessage, error) {
	if ce.DataBase64 != "" {
		b, err := base64.StdEncoding.DecodeString(ce.DataBase64)
		if err != nil {
			return nil, fmt.Errorf("%w: data_base64: %w", ErrMalformed, err)
		}
		return b, nil
	}
	// Some senders put JSON text in a string.
	if len(ce.Data) > 0 && ce.Data[0] == '"' {
		var s string
		if err := json.Unmarshal(ce.Data, &s); err != nil {
			return nil, fmt.Errorf("%w: data: %w", ErrMalformed, err)
		}
		return json.RawMessage(s), nil
	}
	return ce.Data, nil
}

func parseStructuredCloudEvent(body []byte) (cloudEvent, error) {
	var ce cloudEvent
	if err := decodeJSON(body, &ce); err != nil {
		return cloudEvent{}, err
	}
	if err := ce.validate(); err != nil {
		return cloudEvent{}, err
	}
	return ce, nil
}

func (ce cloudEvent) validate() error {
	if ce.SpecVersion == "" || ce.Type == "" {
		return fmt.Errorf("%w: cloudevent without specversion or type", ErrMalformed)
	}
	return nil
}

// IsBinaryCloudEvent reports whether a request carries a CloudEvent in
// binary mode: attributes in ce-* headers, data in the body.
func IsBinaryCloudEvent(h http.Header) bool {
	return h.Get("Ce-Specversion") != ""
}

// ParseCloudEvent reads a CloudEvent in binary mode (ce-* headers, data in
// body), in structured mode (application/cloudevents+json) or a batch
// (application/cloudevents-batch+json), and turns Zot, Harbor and Amazon
// ECR events into Events. Events of other types come back with an empty
// Job.Action, to be dropped.
func ParseCloudEvent(h http.Header, body []byte) ([]Event, error) {
	var ces []cloudEvent
	switch {
	case IsBinaryCloudEvent(h):
		ce := cloudEvent{
			SpecVersion: h.Get("Ce-Specversion"),
			ID:          h.Get("Ce-Id"),
			Source:      h.Get("Ce-Source"),
			Type:        h.Get("Ce-Type"),
			Time:        h.Get("Ce-Time"),
			Operator:    h.Get("Ce-Operator"),
			Data:        json.RawMessage(bytes.TrimSpace(body)),
		}
		if err := ce.validate(); err != nil {
			return nil, err
		}
		ces = append(ces, ce)
	case mediaTypeOf(h.Get("Content-Type")) == MediaTypeCloudEventsBatch:
		if err := decodeJSON(body, &ces); err != nil {
			return nil, err
		}
		if len(ces) > maxEventsPerRequest {
			return nil, fmt.Errorf("%w: %d events in one batch", ErrMalformed, len(ces))
		}
		for _, ce := range ces {
			if err := ce.validate(); err != nil {
				return nil, err
			}
		}
	default:
		ce, err := parseStructuredCloudEvent(body)
		if err != nil {
			return nil, err
		}
		ces = append(ces, ce)
	}
	var events []Event
	for _, ce := range ces {
		evs, err := cloudEventEvents(ce)
		if err != nil {
			return nil, err
		}
		events = append(events, evs...)
		if len(events) > maxEventsPerRequest {
			return nil, fmt.Errorf("%w: more than %d events", ErrMalformed, maxEventsPerRequest)
		}
	}
	return events, nil
}

// cloudEventEvents dispatches on the event type.
func cloudEventEvents(ce cloudEvent) ([]Event, error) {
	t := strings.ToLower(ce.Type)
	switch {
	case strings.HasPrefix(t, "harbor."):
		return harborCloudEvent(ce)
	case strings.HasPrefix(t, "zotregistry.") || strings.HasSuffix(t, ".image.updated") || strings.HasSuffix(t, ".image.deleted"):
		return zotCloudEvent(ce)
	case ce.Source == "aws.ecr" || strings.HasPrefix(t, "aws.ecr") || t == "ecr image action":
		data, err := ce.data()
		if err != nil {
			return nil, err
		}
		return ecrEvents(data, ce.ID, parseTime(ce.Time))
	}
	return []Event{{Job: queue.Job{Source: SourceCloudEvents, EventID: ce.ID}, SourceAction: t}}, nil
}

// zotData is the data of Zot's events.
type zotData struct {
	Name      string `json:"name"`
	Reference string `json:"reference"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	// Manifest is the manifest's JSON text (absent on delete).
	Manifest string `json:"manifest"`
}

func zotCloudEvent(ce cloudEvent) ([]Event, error) {
	raw, err := ce.data()
	if err != nil {
		return nil, err
	}
	var d zotData
	if len(raw) > 0 {
		if err := decodeJSON(raw, &d); err != nil {
			return nil, err
		}
	}
	// The action is the last two parts of the type, so a configured type
	// prefix does not matter: "zotregistry.image.updated" → "image.updated".
	action := strings.ToLower(ce.Type)
	if parts := strings.Split(action, "."); len(parts) >= 2 {
		action = strings.Join(parts[len(parts)-2:], ".")
	}
	ev := Event{
		Job: queue.Job{
			Source:     SourceZot,
			EventID:    ce.ID,
			Repository: d.Name,
			Digest:     d.Digest,
			Tag:        tagOnly(d.Reference),
			MediaType:  d.MediaType,
			Action:     normaliseAction(action),
			OccurredAt: parseTime(ce.Time),
		},
		SourceAction: action,
	}
	if d.Manifest != "" {
		var m struct {
			ArtifactType string               `json:"artifactType"`
			Config       ocispec.Descriptor   `json:"config"`
			Layers       []ocispec.Descriptor `json:"layers"`
			Manifests    []ocispec.Descriptor `json:"manifests"`
		}
		// An unreadable manifest only costs the own-artifact check here;
		// the worker checks again on the fetched manifest.
		if json.Unmarshal([]byte(d.Manifest), &m) == nil {
			ev.ArtifactType = m.ArtifactType
			ev.ConfigMediaType = m.Config.MediaType
			if m.Config.MediaType != "" {
				ev.References = append(ev.References, m.Config)
			}
			ev.References = append(ev.References, m.Layers...)
			ev.References = append(ev.References, m.Manifests...)
		}
	}
	return []Event{ev}, nil
}

// eventBridgeEvent is an Amazon EventBridge event.
type eventBridgeEvent struct {
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Account    string          `json:"account"`
	Time       string          `json:"time"`
	Region     string          `json:"region"`
	Detail     json.RawMessage `json:"detail"`
}

// ecrDetail is the detail of an "ECR Image Action" event.
type ecrDetail struct {
	Result            string `json:"result"`
	RepositoryName    string `json:"repository-name"`
	ImageDigest       string `json:"image-digest"`
	ActionType        string `json:"action-type"`
	ImageTag          string `json:"image-tag"`
	ManifestMediaType string `json:"manifest-media-type"`
	ArtifactMediaType string `json:"artifact-media-type"`
}

// ParseEventBridge reads a raw Amazon EventBridge event, as an API
// destination delivers it. Only "ECR Image Action" events become jobs.
func ParseEventBridge(body []byte) ([]Event, error) {
	return ecrEvents(body, "", time.Time{})
}

// ecrEvents reads either a whole EventBridge event or only its detail (an
// input transformer may forward either as CloudEvent data).
func ecrEvents(raw json.RawMessage, id string, occurred time.Time) ([]Event, error) {
	var eb eventBridgeEvent
	if err := decodeJSON(raw, &eb); err != nil {
		return nil, err
	}
	detailRaw := eb.Detail
	if len(detailRaw) == 0 {
		detailRaw = raw
	} else if eb.DetailType != "" && eb.DetailType != "ECR Image Action" {
		return []Event{{Job: queue.Job{Source: SourceECR, EventID: eb.ID}, SourceAction: strings.ToLower(eb.DetailType)}}, nil
	}
	var d ecrDetail
	if err := decodeJSON(detailRaw, &d); err != nil {
		return nil, err
	}
	if d.RepositoryName == "" && d.ImageDigest == "" && d.ActionType == "" {
		return nil, fmt.Errorf("%w: not an ECR image action", ErrMalformed)
	}
	if eb.ID != "" {
		id = eb.ID
	}
	if t := parseTime(eb.Time); !t.IsZero() {
		occurred = t
	}
	action := strings.ToLower(d.ActionType)
	job := queue.Job{
		Source:     SourceECR,
		EventID:    id,
		Registry:   ecrHost(eb.Account, eb.Region),
		Repository: d.RepositoryName,
		Digest:     d.ImageDigest,
		Tag:        d.ImageTag,
		MediaType:  d.ManifestMediaType,
		Action:     normaliseAction(action),
		OccurredAt: occurred,
	}
	if !strings.EqualFold(d.Result, "SUCCESS") && d.Result != "" {
		job.Action = ""
		action += "_" + strings.ToLower(d.Result)
	}
	return []Event{{Job: job, SourceAction: action, ConfigMediaType: d.ArtifactMediaType}}, nil
}

// ecrHost is the registry host of an ECR account and region.
func ecrHost(account, region string) string {
	if account == "" || region == "" {
		return ""
	}
	host := account + ".dkr.ecr." + region + ".amazonaws.com"
	if strings.HasPrefix(region, "cn-") {
		host += ".cn"
	}
	return host
}

// mediaTypeOf is the media type of a Content-Type value, lowercased,
// without parameters.
func mediaTypeOf(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(contentType))
	}
	return mt
}
