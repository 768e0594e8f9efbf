package db

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// JobKey names a job: an image (registry/repository@digest) served under
// one tag, which is empty for an image pushed by digest alone. Each tag of
// an image has its own job, since each gets its own v2 index tag; methods
// about the image as a whole (RecordLayerUses, RemoveImage) ignore Tag.
type JobKey struct {
	Registry   string // host[:port]
	Repository string
	Digest     string // manifest or image index digest
	Tag        string // the tag the image was pushed under; may be empty
}

// String returns registry/repository:tag@digest, without ":tag" when
// there is no tag.
func (k JobKey) String() string {
	ref := k.Registry + "/" + k.Repository
	if k.Tag != "" {
		ref += ":" + k.Tag
	}
	return ref + "@" + k.Digest
}

// Image is the key of the image alone, without its tag.
func (k JobKey) Image() JobKey {
	k.Tag = ""
	return k
}

// ErrInvalidJobKey is returned for a JobKey with an empty part.
var ErrInvalidJobKey = errors.New("job key needs a registry, a repository and a digest")

func (k JobKey) validate() error {
	if k.Registry == "" || k.Repository == "" || k.Digest == "" {
		return fmt.Errorf("db: %q: %w", k.String(), ErrInvalidJobKey)
	}
	return nil
}

// JobStatus is where a job stands.
type JobStatus string

const (
	JobQueued    JobStatus = "queued"
	JobRunning   JobStatus = "running"
	JobSucceeded JobStatus = "succeeded"
	JobSkipped   JobStatus = "skipped" // see Job.SkipReason
	JobFailed    JobStatus = "failed"  // permanently; see Job.LastError
	// JobAbandoned is an attempt status only: the attempt was still running
	// when its job was started again (its worker was killed or lost).
	JobAbandoned JobStatus = "abandoned"
)

// Job is the last state of indexing one image under one tag.
type Job struct {
	JobKey
	Source     string // the event source that asked for it, e.g. "distribution"
	Status     JobStatus
	SkipReason string
	// LastError of the last failed attempt; a queued job may carry one from
	// a transient failure.
	LastError   string
	Attempts    int
	OptionsHash string // set by Succeed
	// IndexDigest is the digest of the v2 SOCI-enabled image index pushed
	// under this tag's v2 tag; empty without a v2 index. Set by Succeed.
	IndexDigest string
	BytesRead   int64
	Worker      string
	QueuedAt    time.Time
	StartedAt   time.Time // zero until started
	FinishedAt  time.Time // zero until finished
}

// JobAttempt is one run of a job.
type JobAttempt struct {
	Attempt    int
	Worker     string
	Status     JobStatus // running, succeeded, skipped, failed or abandoned
	Error      string
	BytesRead  int64
	StartedAt  time.Time
	FinishedAt time.Time // zero while running
}

// JobResult is what a successful run reports.
type JobResult struct {
	BytesRead int64
	// OptionsHash identifies the build options (span size, builder version,
	// index version...) so IsIndexed can tell whether a rebuild is due.
	OptionsHash string
	// IndexDigest is the v2 SOCI-enabled image index pushed for the tag,
	// if any: another tag of the same image can be given the same index.
	IndexDigest string
}

// JobFilter selects jobs for List. Zero fields match everything.
type JobFilter struct {
	Registry   string
	Repository string
	Digest     string
	Tag        string
	Status     JobStatus
	// Limit caps the result; 0 means 100. Newest queued first.
	Limit int
}

// JobStore keeps one job per image and tag (JobKey). Every method that
// names a job which does not exist (except UpsertQueued and Start, which
// create it) returns an error wrapping ErrJobNotFound.
type JobStore interface {
	// UpsertQueued records that an event asked for the image under key's
	// tag. A new job is queued; a failed one is queued again; a queued,
	// running, succeeded or skipped one keeps its status.
	UpsertQueued(ctx context.Context, key JobKey, source string) (*Job, error)
	// Start marks the job running on worker, counts an attempt and returns
	// its number (1 for the first). It creates the job if needed. Attempts
	// of the job still running (their worker died: the caller holds the
	// image's lock) are closed as abandoned.
	Start(ctx context.Context, key JobKey, worker string) (attempt int, err error)
	// Succeed marks the job and its current attempt succeeded.
	Succeed(ctx context.Context, key JobKey, result JobResult) error
	// Skip marks the job and its current attempt skipped for reason.
	Skip(ctx context.Context, key JobKey, reason string) error
	// Fail records cause on the current attempt. A permanent failure marks
	// the job failed; otherwise it goes back to queued for a retry.
	Fail(ctx context.Context, key JobKey, cause error, permanent bool) error
	// Get returns the job.
	Get(ctx context.Context, key JobKey) (*Job, error)
	// List returns the jobs filter selects, newest queued first.
	List(ctx context.Context, filter JobFilter) ([]*Job, error)
	// Attempts returns the job's attempts, first first.
	Attempts(ctx context.Context, key JobKey) ([]*JobAttempt, error)
	// IsIndexed reports whether the job's last run (this image under this
	// tag) succeeded with the same build options.
	IsIndexed(ctx context.Context, key JobKey, optionsHash string) (bool, error)
	// FindIndexed returns a succeeded job of the image (any tag; key.Tag is
	// ignored) built with the same options, one with a v2 index first, or
	// an error wrapping ErrJobNotFound.
	FindIndexed(ctx context.Context, key JobKey, optionsHash string) (*Job, error)
	// RemoveJob forgets one job (a deleted tag) and its attempts; the
	// image's artifacts and its other tags' jobs stay.
	RemoveJob(ctx context.Context, key JobKey) error
}

func (f JobFilter) limit() int {
	if f.Limit <= 0 {
		return 100
	}
	return f.Limit
}

// abandonedError is what an attempt cut off gets as its error.
const abandonedError = "abandoned: the job started again while this attempt was running (its worker died or lost the database)"

// errorText is what Fail stores for cause.
func errorText(cause error) string {
	if cause == nil {
		return "unknown error"
	}
	return cause.Error()
}

// jobFinisher records how a run ended, as a backend does it; embedded in
// the backend, it gives it Succeed, Skip and Fail.
type jobFinisher func(ctx context.Context, key JobKey, o outcome) error

func (finish jobFinisher) Succeed(ctx context.Context, key JobKey, result JobResult) error {
	return finish(ctx, key, succeeded(result))
}

func (finish jobFinisher) Skip(ctx context.Context, key JobKey, reason string) error {
	return finish(ctx, key, skipped(reason))
}

func (finish jobFinisher) Fail(ctx context.Context, key JobKey, cause error, permanent bool) error {
	return finish(ctx, key, failed(cause, permanent))
}

// outcome is how a run ended, as both backends write it.
type outcome struct {
	jobStatus     JobStatus
	attemptStatus JobStatus
	skipReason    string
	errorText     string
	bytesRead     int64
	optionsHash   string
	indexDigest   string
}

func succeeded(r JobResult) outcome {
	return outcome{jobStatus: JobSucceeded, attemptStatus: JobSucceeded, bytesRead: r.BytesRead,
		optionsHash: r.OptionsHash, indexDigest: r.IndexDigest}
}

func skipped(reason string) outcome {
	return outcome{jobStatus: JobSkipped, attemptStatus: JobSkipped, skipReason: reason}
}

// failed queues the job again unless the failure is permanent; the attempt
// failed either way.
func failed(cause error, permanent bool) outcome {
	o := outcome{jobStatus: JobQueued, attemptStatus: JobFailed, errorText: errorText(cause)}
	if permanent {
		o.jobStatus = JobFailed
	}
	return o
}
