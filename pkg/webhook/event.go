// Package webhook receives registry notifications over HTTP and turns each
// event about a pushed or deleted manifest into one queue.Job.
//
// It accepts CNCF distribution notifications, Harbor webhooks (Default and
// CloudEvents formats), CloudEvents in structured and binary mode (Zot,
// Harbor, ECR events forwarded as CloudEvents) and raw Amazon EventBridge
// ECR events. Every ingest endpoint is authenticated; events about blobs,
// pulls, mounts and the indexer's own artifacts are dropped and counted.
package webhook

import (
	"errors"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// Event is one parsed registry event: the job it would become, plus what
// the filters need to decide whether it should.
type Event struct {
	// Job is the normalised job. Job.Action is empty when the source's
	// action is neither a push nor a delete; Job.Registry is empty when
	// the payload does not name the registry host.
	Job queue.Job
	// SourceAction is the action as the source spelled it, lowercased,
	// e.g. "push", "pull", "mount", "push_artifact", "image.updated".
	SourceAction string
	// References are the descriptors the manifest refers to, when the
	// source includes them (distribution with includereferences, Zot).
	References []ocispec.Descriptor
	// ConfigMediaType and ArtifactType of the manifest, when known.
	ConfigMediaType string
	ArtifactType    string
	// Blob is set when the event is about a blob rather than a manifest.
	Blob bool
}

// ErrMalformed is returned by the parsers for a body that is not the
// format they read. The handler answers it with 400.
var ErrMalformed = errors.New("webhook: malformed payload")

// maxEventsPerRequest bounds the work one request can ask for; registries
// send one event (distribution, Zot) or a handful (Harbor resources).
const maxEventsPerRequest = 1000

// Media types the webhook reads or recognises.
const (
	MediaTypeDistributionEventsV1 = "application/vnd.docker.distribution.events.v1+json"
	MediaTypeDistributionEventsV2 = "application/vnd.docker.distribution.events.v2+json"
	MediaTypeCloudEvents          = "application/cloudevents+json"
	MediaTypeCloudEventsBatch     = "application/cloudevents-batch+json"

	mediaTypeOctetStream = "application/octet-stream"
)

// Source names used in queue.Job.Source.
const (
	SourceDistribution = "distribution"
	SourceHarbor       = "harbor"
	SourceZot          = "zot"
	SourceECR          = "ecr"
	SourceCloudEvents  = "cloudevents"
)

// normaliseAction maps a source's action to a job action, or "".
func normaliseAction(a string) queue.Action {
	switch strings.ToLower(a) {
	case "push", "push_artifact", "artifact.pushed", "image.updated":
		return queue.ActionPush
	case "delete", "delete_artifact", "artifact.deleted", "image.deleted":
		return queue.ActionDelete
	}
	return ""
}

// parseTime reads RFC 3339 time, leaving zero when absent or unreadable:
// an event's time is informational.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}
