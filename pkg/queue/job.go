// Package queue carries index jobs through NATS JetStream: a work-queue
// stream shared by all workers through one durable pull consumer, publish
// with deduplication, bounded concurrent consumption with ack, backoff,
// termination and a dead-letter stream, and the inspection the CLI needs.
//
// The package knows nothing of SOCI: a Job names an image manifest in a
// registry and what happened to it.
package queue

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Action is what happened to a manifest in the registry.
type Action string

const (
	// ActionPush means a manifest was pushed (by digest or by tag).
	ActionPush Action = "push"
	// ActionDelete means a manifest was deleted.
	ActionDelete Action = "delete"
)

// Job is one normalised registry event: a manifest pushed or deleted. It
// travels JSON-encoded.
type Job struct {
	// Source names the kind of registry that sent the event:
	// distribution, harbor, zot, ecr or cloudevents.
	Source string `json:"source"`
	// EventID is the sender's event id, when it has one.
	EventID string `json:"event_id,omitempty"`
	// Registry is the registry host, e.g. "registry.example:5000".
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	// Tag is the tag the image was pushed under or the tag deleted; empty
	// for a push or delete by digest alone. Workers resolve the manifest by
	// Digest, since the tag may not resolve yet when the event arrives, and
	// use the tag for the image's v2 tag. A push of one digest under two
	// tags is two jobs.
	Tag       string `json:"tag,omitempty"`
	MediaType string `json:"media_type,omitempty"`
	Action    Action `json:"action"`
	// Actor is who caused the event, when the registry says.
	Actor      string    `json:"actor,omitempty"`
	OccurredAt time.Time `json:"occurred_at,omitzero"`
	ReceivedAt time.Time `json:"received_at,omitzero"`
}

// ErrInvalidJob is returned by Publish for a job missing what a worker
// needs to find the manifest.
var ErrInvalidJob = errors.New("queue: invalid job")

// Validate reports whether the job names a manifest and an action. A
// delete may name a tag without a digest (a registry's tag delete).
func (j Job) Validate() error {
	switch {
	case j.Registry == "":
		return fmt.Errorf("%w: no registry", ErrInvalidJob)
	case j.Repository == "":
		return fmt.Errorf("%w: no repository", ErrInvalidJob)
	case j.Digest == "" && (j.Action != ActionDelete || j.Tag == ""):
		return fmt.Errorf("%w: no digest", ErrInvalidJob)
	case j.Action != ActionPush && j.Action != ActionDelete:
		return fmt.Errorf("%w: action %q", ErrInvalidJob, j.Action)
	}
	return nil
}

// Key identifies the work a job asks for: the image digest, the tag it is
// served under (maybe none) and the action, as
// registry/repository:tag@digest/action (":tag" left out when there is no
// tag). Two events with the same key are the same job; Publish uses the key
// as the JetStream message id so duplicates within the dedup window are
// dropped. The same digest pushed under another tag is another job: its
// tag needs its own v2 index tag.
func (j Job) Key() string {
	ref := j.Registry + "/" + j.Repository
	if j.Tag != "" {
		ref += ":" + j.Tag
	}
	return ref + "@" + j.Digest + "/" + string(j.Action)
}

// subjectToken is a short stable token for the job's manifest, so every
// event for one manifest lands on the same subject (a tag delete without a
// digest: every event for that tag).
func (j Job) subjectToken() string {
	name := j.Digest
	if name == "" {
		name = ":" + j.Tag
	}
	sum := sha256.Sum256([]byte(j.Registry + "/" + j.Repository + "@" + name))
	return hex.EncodeToString(sum[:8])
}
