package scale_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/soci-indexer/soci-indexer/internal/demoimage"
	"github.com/soci-indexer/soci-indexer/internal/registryclient"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// TestManyWorkersSurviveSIGKILL: the webhook and three worker processes on
// one Postgres database and one JetStream consumer; 40 images are pushed
// while one worker process is killed with SIGKILL whenever it is running a
// job, and started again, over and over. Every image is indexed exactly
// once (one succeeded attempt, one SOCI index under its v2 tag), no job is
// left queued or running, every job's attempts are numbered 1..n and end
// with the one that succeeded, an attempt is left unfinished only by a
// killed process, and JetStream holds nothing afterwards: no pending or
// unacknowledged message, no dead letter.
func TestManyWorkersSurviveSIGKILL(t *testing.T) {
	const (
		images   = 40
		layers   = 2
		minKills = 3
		maxKills = 8
	)
	// Workers reach the registry through a proxy that serves 4 MiB/s per
	// connection, so that a job spends a while streaming its layers and a
	// kill lands in the middle of one.
	start := time.Now()
	c := newCluster(t, clusterOptions{webhook: true, throttle: 4 << 20, settings: map[string]string{
		"workers":        "2",
		"min_layer_size": "0",
		"span_size":      "1048576",
		// A killed process's jobs come back after ack_wait.
		"ack_wait": "3s",
		// Kills cost deliveries; none of these jobs may run out of them.
		"max_deliver": "20",
	}})
	stable := []*worker{c.startWorker("worker-a"), c.startWorker("worker-b")}
	victim := c.startWorker("worker-victim")
	killed := map[string]bool{} // worker names (hostname:pid) of killed processes

	client, err := registryclient.New(registryclient.Options{PlainHTTP: true, NoDockerConfig: true})
	if err != nil {
		t.Fatal(err)
	}
	// A bound on the pushes, not a speed check: on a loaded 2-core machine
	// 40 pushes through the throttled proxy took over 100 s.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	repo, err := client.RepositoryOf(ctx, c.reg.Addr(), "scale/app")
	if err != nil {
		t.Fatal(err)
	}

	// Push, while the killer below kills the victim whenever it has a job.
	keys := make([]db.JobKey, images)
	pushed := make(chan error, 1)
	go func() {
		defer close(pushed)
		for i := range images {
			var ls []demoimage.Layer
			for l := range layers {
				layer, err := demoimage.RandomLayer(uint64(start.UnixNano())+uint64(i*layers+l), 512<<10, t.TempDir())
				if err != nil {
					pushed <- err
					return
				}
				ls = append(ls, layer)
			}
			desc, err := demoimage.Push(ctx, repo, fmt.Sprintf("v%d", i), ls)
			if err != nil {
				pushed <- fmt.Errorf("push image %d: %w", i, err)
				return
			}
			keys[i] = db.JobKey{Registry: c.workerRegistry, Repository: "scale/app", Digest: desc.Digest.String(), Tag: fmt.Sprintf("v%d", i)}
		}
	}()

	var kills, killsInFlight int
	pushDone := false
	var pushErr error
	for kills < maxKills {
		select {
		case err, ok := <-pushed:
			if ok {
				pushErr = err
			}
			pushDone = true
			pushed = nil
		default:
		}
		if pushErr != nil {
			t.Fatal(pushErr)
		}
		if pushDone && kills >= minKills {
			break
		}
		// Wait (a little) for the victim to be running a job, by the job
		// table, then kill it.
		busy := false
		for wait := time.Now().Add(5 * time.Second); time.Now().Before(wait); time.Sleep(10 * time.Millisecond) {
			if c.runningOn(ctx, victim) {
				busy = true
				break
			}
		}
		victim.Kill()
		killed[victim.name] = true
		kills++
		if busy {
			killsInFlight++
		}
		victim = c.startWorker(fmt.Sprintf("worker-victim-%d", kills))
	}
	if pushed != nil {
		if err := <-pushed; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d images pushed; victim killed %d times (%d while running a job) in %s",
		images, kills, killsInFlight, time.Since(start).Round(time.Millisecond))
	if killsInFlight == 0 {
		t.Fatal("the victim was never killed while it ran a job: the run proves nothing")
	}

	jobs, err := c.waitJobs(keys, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cut := 0
	for i, job := range jobs {
		if job.Status != db.JobSucceeded {
			t.Errorf("image %d: job %s (%s%s)", i, job.Status, job.LastError, job.SkipReason)
			continue
		}
		cut += checkAttempts(t, c.store, keys[i], job, killed)
		checkIndexedOnce(ctx, t, repo, fmt.Sprintf("v%d", i))
	}
	if cut == 0 {
		t.Error("no attempt was cut by a kill: the jobs the victim ran all finished before it died")
	}
	for _, status := range []db.JobStatus{db.JobRunning, db.JobQueued, db.JobFailed} {
		left, err := c.store.List(ctx, db.JobFilter{Registry: c.workerRegistry, Status: status, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 0 {
			t.Errorf("%d jobs left %s, e.g. %s", len(left), status, left[0].JobKey)
		}
	}
	// The queue drains once the last ack is in.
	var q queueState
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if q, err = c.queueState(ctx); err != nil {
			t.Fatal(err)
		}
		if q.streamMsgs == 0 && q.pending == 0 && q.ackPending == 0 || time.Now().After(deadline) {
			break
		}
	}
	if q.streamMsgs != 0 || q.pending != 0 || q.ackPending != 0 || q.dead != 0 {
		t.Errorf("queue afterwards: %d messages in the stream, %d pending, %d unacknowledged, %d dead letters; want none",
			q.streamMsgs, q.pending, q.ackPending, q.dead)
	}
	for _, w := range append(stable, victim) {
		if err := w.Stop(15 * time.Second); err != nil {
			t.Errorf("%s on SIGTERM: %v", w.Name, err)
		}
	}
	t.Logf("%d images, %d cut attempts redone, all checked in %s", images, cut, time.Since(start).Round(time.Millisecond))
}

// checkAttempts checks one succeeded job's attempts and returns how many
// were cut short by a kill.
func checkAttempts(t *testing.T, store db.Store, key db.JobKey, job *db.Job, killed map[string]bool) int {
	t.Helper()
	attempts, err := store.Attempts(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(attempts) != job.Attempts || len(attempts) == 0 {
		t.Errorf("%s: job counts %d attempts, %d recorded", key, job.Attempts, len(attempts))
		return 0
	}
	cut, succeeded := 0, 0
	for i, a := range attempts {
		if a.Attempt != i+1 {
			t.Errorf("%s: attempt %d numbered %d", key, i+1, a.Attempt)
		}
		switch a.Status {
		case db.JobSucceeded:
			succeeded++
			if i != len(attempts)-1 {
				t.Errorf("%s: attempt %d of %d succeeded, yet more followed", key, i+1, len(attempts))
			}
		case db.JobFailed:
			// A transient failure, retried: it has its error and its end.
			if a.Error == "" || a.FinishedAt.IsZero() {
				t.Errorf("%s: failed attempt %d without error or end", key, a.Attempt)
			}
		default:
			// Cut short: still "running" (or closed as abandoned once
			// redelivered). Only a killed process leaves one.
			if !killed[a.Worker] {
				t.Errorf("%s: attempt %d %s by %s, which was never killed", key, a.Attempt, a.Status, a.Worker)
			}
			cut++
		}
	}
	if succeeded != 1 {
		t.Errorf("%s: %d attempts succeeded, want exactly 1", key, succeeded)
	}
	if job.Worker != attempts[len(attempts)-1].Worker {
		t.Errorf("%s: job names worker %s, its last attempt %s", key, job.Worker, attempts[len(attempts)-1].Worker)
	}
	return cut
}

// checkIndexedOnce: the image's v2 tag names an image index with exactly
// one SOCI index.
func checkIndexedOnce(ctx context.Context, t *testing.T, repo interface {
	content.Fetcher
	content.Resolver
}, tag string) {
	t.Helper()
	desc, err := repo.Resolve(ctx, tag+"-soci")
	if err != nil {
		t.Errorf("%s: no v2 index: %v", tag, err)
		return
	}
	body, err := content.FetchAll(ctx, repo, desc)
	if err != nil {
		t.Errorf("%s-soci: %v", tag, err)
		return
	}
	var idx ocispec.Index
	if err := json.Unmarshal(body, &idx); err != nil {
		t.Errorf("%s-soci: %v", tag, err)
		return
	}
	n := 0
	for _, m := range idx.Manifests {
		if m.ArtifactType == index.SociIndexArtifactTypeV2 {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%s-soci lists %d SOCI indexes, want 1", tag, n)
	}
}
