package webhook

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// harborEvent is Harbor's Default webhook payload.
type harborEvent struct {
	Type      string          `json:"type"`
	OccurAt   int64           `json:"occur_at"`
	Operator  string          `json:"operator"`
	EventData json.RawMessage `json:"event_data"`
}

// harborEventData is event_data in the Default format and data in the
// CloudEvents format.
type harborEventData struct {
	Resources []struct {
		Digest      string `json:"digest"`
		Tag         string `json:"tag"`
		ResourceURL string `json:"resource_url"`
	} `json:"resources"`
	Repository struct {
		Name         string `json:"name"`
		Namespace    string `json:"namespace"`
		RepoFullName string `json:"repo_full_name"`
	} `json:"repository"`
}

// ParseHarbor reads a Harbor webhook in the Default format or, when the
// body is a CloudEvent (it has specversion), the CloudEvents format.
func ParseHarbor(body []byte) ([]Event, error) {
	var probe struct {
		SpecVersion string `json:"specversion"`
	}
	if err := decodeJSON(body, &probe); err != nil {
		return nil, err
	}
	if probe.SpecVersion != "" {
		ce, err := parseStructuredCloudEvent(body)
		if err != nil {
			return nil, err
		}
		return harborCloudEvent(ce)
	}
	var he harborEvent
	if err := decodeJSON(body, &he); err != nil {
		return nil, err
	}
	if he.Type == "" {
		return nil, fmt.Errorf("%w: harbor event without type", ErrMalformed)
	}
	var occurred time.Time
	if he.OccurAt > 0 && he.OccurAt < 1<<40 {
		occurred = time.Unix(he.OccurAt, 0).UTC()
	}
	return harborEvents(he.EventData, he.Type, "", he.Operator, occurred)
}

func harborCloudEvent(ce cloudEvent) ([]Event, error) {
	data, err := ce.data()
	if err != nil {
		return nil, err
	}
	return harborEvents(data, strings.TrimPrefix(ce.Type, "harbor."), ce.ID, ce.Operator, parseTime(ce.Time))
}

func harborEvents(raw json.RawMessage, action, id, operator string, occurred time.Time) ([]Event, error) {
	var data harborEventData
	if len(raw) > 0 {
		if err := decodeJSON(raw, &data); err != nil {
			return nil, err
		}
	}
	if len(data.Resources) > maxEventsPerRequest {
		return nil, fmt.Errorf("%w: %d resources in one event", ErrMalformed, len(data.Resources))
	}
	repo := data.Repository.RepoFullName
	if repo == "" && data.Repository.Name != "" {
		repo = strings.Trim(data.Repository.Namespace+"/"+data.Repository.Name, "/")
	}
	events := make([]Event, 0, len(data.Resources))
	for _, r := range data.Resources {
		events = append(events, Event{
			Job: queue.Job{
				Source:     SourceHarbor,
				EventID:    id,
				Registry:   harborHost(r.ResourceURL),
				Repository: repo,
				Digest:     r.Digest,
				Tag:        tagOnly(r.Tag),
				Action:     normaliseAction(action),
				Actor:      operator,
				OccurredAt: occurred,
			},
			SourceAction: strings.ToLower(action),
		})
	}
	return events, nil
}

// harborHost is the host part of a resource_url such as
// "harbor.example/library/app:v1" (Harbor's ext_endpoint without scheme).
func harborHost(resourceURL string) string {
	s := resourceURL
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	host, _, found := strings.Cut(s, "/")
	if !found {
		return ""
	}
	return host
}

// tagOnly drops a "tag" that is really a digest: Harbor and Zot put the
// digest there for artifacts pushed without a tag.
func tagOnly(ref string) string {
	if strings.Contains(ref, ":") {
		return ""
	}
	return ref
}
