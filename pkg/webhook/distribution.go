package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// distributionEnvelope is a CNCF distribution notification envelope
// (notifications.Envelope); only the fields we use.
type distributionEnvelope struct {
	Events []distributionEvent `json:"events"`
}

type distributionEvent struct {
	ID        string `json:"id"`
	Timestamp string `json:"timestamp"`
	Action    string `json:"action"`
	Target    struct {
		MediaType    string               `json:"mediaType"`
		Digest       string               `json:"digest"`
		ArtifactType string               `json:"artifactType"`
		Repository   string               `json:"repository"`
		URL          string               `json:"url"`
		Tag          string               `json:"tag"`
		References   []ocispec.Descriptor `json:"references"`
	} `json:"target"`
	Request struct {
		Host string `json:"host"`
	} `json:"request"`
	Actor struct {
		Name string `json:"name"`
	} `json:"actor"`
}

// ParseDistribution reads a CNCF distribution notification envelope. The
// registry host comes from target.url, else request.host.
func ParseDistribution(body []byte) ([]Event, error) {
	var env distributionEnvelope
	if err := decodeJSON(body, &env); err != nil {
		return nil, err
	}
	if len(env.Events) > maxEventsPerRequest {
		return nil, fmt.Errorf("%w: %d events in one envelope", ErrMalformed, len(env.Events))
	}
	events := make([]Event, 0, len(env.Events))
	for _, e := range env.Events {
		t := e.Target
		events = append(events, Event{
			Job: queue.Job{
				Source:     SourceDistribution,
				EventID:    e.ID,
				Registry:   hostOf(t.URL, e.Request.Host),
				Repository: t.Repository,
				Digest:     t.Digest,
				Tag:        t.Tag,
				MediaType:  t.MediaType,
				Action:     normaliseAction(e.Action),
				Actor:      e.Actor.Name,
				OccurredAt: parseTime(e.Timestamp),
			},
			SourceAction: strings.ToLower(e.Action),
			References:   t.References,
			ArtifactType: t.ArtifactType,
			Blob:         isBlobEvent(e.Action, t.MediaType, t.URL),
		})
	}
	return events, nil
}

// isBlobEvent tells blob events from manifest events. Blob pushes, pulls and
// mounts always carry application/octet-stream; a manifest event always has
// the manifest's media type, except deletes, which carry only the digest.
func isBlobEvent(action, mediaType, targetURL string) bool {
	if mediaType == mediaTypeOctetStream || strings.Contains(targetURL, "/blobs/") {
		return true
	}
	return mediaType == "" && !strings.EqualFold(action, "delete")
}

// hostOf is the host of rawURL, or fallback when rawURL has none.
func hostOf(rawURL, fallback string) string {
	if u, err := url.Parse(rawURL); err == nil && u.Host != "" {
		return u.Host
	}
	return fallback
}

// decodeJSON decodes one JSON value, wrapping failures in ErrMalformed.
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}
