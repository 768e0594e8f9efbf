package db

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/soci-indexer/soci-indexer/internal/testpg"

	"github.com/soci-indexer/soci-indexer/migrations"
)

func TestPostgresConformance(t *testing.T) {
	t.Parallel()
	testStore(t, func(t *testing.T) Store { return openStore(t, newPostgresDSN(t)) })
}

// TestPostgresLockAcrossProcesses takes the lock through two stores, each
// with its own pool, as two worker processes would.
func TestPostgresLockAcrossProcesses(t *testing.T) {
	t.Parallel()
	dsn := newPostgresDSN(t)
	testLockers(t, openStore(t, dsn), openStore(t, dsn))
}

// TestPostgresLockReleasedOnClose: a process that dies holding the lock
// does not block the others.
func TestPostgresLockReleasedOnClose(t *testing.T) {
	t.Parallel()
	dsn := newPostgresDSN(t)
	ctx := context.Background()
	holder, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Lock(ctx, "key"); err != nil {
		t.Fatal(err)
	}
	other := openStore(t, dsn)
	waitCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := other.Lock(waitCtx, "key"); err == nil {
		t.Fatal("lock taken twice")
	}
	holder.Close()
	waitCtx, cancel = context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	unlock, err := other.Lock(waitCtx, "key")
	if err != nil {
		t.Fatalf("lock after the holder closed: %v", err)
	}
	unlock()
}

func TestPostgresUpgradeKeepsData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := newPostgresDSN(t)
	pool, err := connectPostgres(ctx, dsn, newOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	sqlDB := stdlib.OpenDBFromPool(pool)
	report, err := migrate(ctx, sqlDB, BackendPostgres, 1, discardLogger())
	if err != nil || report.To != 1 {
		t.Fatalf("migrate to 1 = %+v, %v", report, err)
	}
	seedVersion1(t, sqlDB)
	sqlDB.Close()
	pool.Close()

	report, err = Migrate(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	latest := latestMigration(t, migrations.Postgres)
	if report.From != 1 || report.To != latest || len(report.Applied) != migrationFiles(t, migrations.Postgres)-1 || report.Applied[0].Version != 2 {
		t.Errorf("upgrade = %+v, want 1 → %d", report, latest)
	}
	assertSeedVersion1(t, openStore(t, dsn))

	// Once up to date, Migrate applies nothing.
	report, err = Migrate(ctx, dsn)
	if err != nil || len(report.Applied) != 0 || report.To != latest {
		t.Errorf("second Migrate = %+v, %v; want nothing applied", report, err)
	}
}

func TestPostgresConcurrentMigrations(t *testing.T) {
	t.Parallel()
	dsn := newPostgresDSN(t)
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			s, err := Open(context.Background(), dsn)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Open: %v", err)
		}
	}
}

func TestPostgresSchemaTooNew(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := newPostgresDSN(t)
	s := openStore(t, dsn)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "INSERT INTO goose_db_version (version_id, is_applied) VALUES (99, true)"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for name, err := range map[string]error{
		"Open":    func() error { _, err := Open(ctx, dsn); return err }(),
		"Migrate": func() error { _, err := Migrate(ctx, dsn); return err }(),
	} {
		var tooNew *SchemaTooNewError
		if !errors.Is(err, ErrSchemaTooNew) || !errors.As(err, &tooNew) || tooNew.DatabaseVersion != 99 ||
			tooNew.KnownVersion != latestMigration(t, migrations.Postgres) {
			t.Errorf("%s on a newer schema: %v, want ErrSchemaTooNew 99 > %d", name, err, latestMigration(t, migrations.Postgres))
		}
	}
}

func TestPostgresUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Port 1 on loopback refuses at once.
	_, err := Open(ctx, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=5")
	if err == nil {
		t.Fatal("Open of an unreachable server: no error")
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("error does not name the host: %v", err)
	}
	if !IsTransient(err) {
		t.Errorf("a refused connection is not transient: %v", err)
	}
	_, err = Open(ctx, "postgres://postgres@db.invalid:5432/postgres?connect_timeout=5")
	if err == nil || !strings.Contains(err.Error(), "db.invalid") {
		t.Errorf("Open of an unknown host: %v, want an error naming db.invalid", err)
	}
}

// TestPostgresConnectionLoss kills the store's server connections from
// another session while it is in use: the next calls must either succeed
// (the pool reconnects) or fail with an error IsTransient accepts.
func TestPostgresConnectionLoss(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn, name := testpg.NewDatabase(t, "soci_test")
	s := openStore(t, dsn, WithMaxConns(4))

	for i := range 4 {
		mustWrite(t, s, ztocEntry(fakeDigest(fmt.Sprint("layer", i)), 1<<22, "v1", repoA))
	}
	// Fill the pool with idle connections to kill.
	pool := s.(*postgresStore).pool
	var conns []*pgxpool.Conn
	for range 3 {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release()
	}
	// Kill them mid-use too: one session sleeps in a query while it dies.
	sleeping := make(chan error, 1)
	go func() {
		_, err := pool.Exec(ctx, "SELECT pg_sleep(5)")
		sleeping <- err
	}()
	waitActive(t, name, "SELECT pg_sleep(5)")
	killed := testpg.TerminateConnections(t, name)
	if killed < 3 {
		t.Fatalf("terminated %d backends, want at least 3", killed)
	}
	if err := <-sleeping; err == nil || !IsTransient(err) {
		t.Errorf("query whose backend was terminated: %v, want a transient error", err)
	}

	var ok, transient int
	var lastTransient error
	for i := range 10 {
		_, err := s.GetArtifactEntry(ctx, fakeDigest(fmt.Sprint("ztoc ", fakeDigest(fmt.Sprint("layer", i%4)), " 4194304 v1")))
		switch {
		case err == nil:
			ok++
		case IsTransient(err):
			transient++
			lastTransient = err
		default:
			t.Errorf("call %d after the backends died: %v is neither success nor transient", i, err)
		}
	}
	if ok == 0 {
		t.Errorf("the pool never recovered: %d transient errors, no success", transient)
	}
	t.Logf("after terminating %d backends: %d calls succeeded, %d transient errors (last: %v)", killed, ok, transient, lastTransient)
}

// TestPostgresLocksDoNotStarveQueries holds more locks than the query pool
// has connections: queries must still run, and locks beyond the lock pool's
// size wait.
func TestPostgresLocksDoNotStarveQueries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, newPostgresDSN(t), WithMaxConns(1), WithMaxLockConns(3))
	for i := range 3 {
		unlock, err := s.Lock(ctx, fmt.Sprint("image ", i))
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
	}
	queryCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.UpsertQueued(queryCtx, seedJob, "test"); err != nil {
		t.Fatalf("query while locks are held: %v", err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(waitCtx, "a fourth image"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("fourth lock with a lock pool of 3: %v, want to wait until the deadline", err)
	}
}

// TestPostgresLockSessionsOutnumberThePool: more jobs than lock
// connections, each holding its job lock while it takes a shared referrers
// lock, all finish: a job holding a lock never needs a second connection.
func TestPostgresLockSessionsOutnumberThePool(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, newPostgresDSN(t), WithMaxLockConns(2))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const jobs = 12
	errs := make(chan error, jobs)
	for i := range jobs {
		go func() {
			errs <- func() error {
				sess, err := s.LockSession(ctx)
				if err != nil {
					return err
				}
				defer sess.Close()
				unlockJob, err := sess.Lock(ctx, fmt.Sprint("job/", i%4))
				if err != nil {
					return err
				}
				defer unlockJob()
				unlockRefs, err := sess.Lock(ctx, "referrers/shared")
				if err != nil {
					return err
				}
				unlockRefs()
				return nil
			}()
		}()
	}
	for range jobs {
		if err := <-errs; err != nil {
			t.Fatalf("job with two locks on a pool of 2: %v", err)
		}
	}
}

// waitActive waits until a session of database name runs query.
func waitActive(t *testing.T, name, query string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testpg.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = $1 AND state = 'active' AND query = $2`, name, query).Scan(&n)
		if err != nil {
			t.Fatalf("waiting for %q to run: %v", query, err)
		}
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPostgresCloseWhileSessionsClose: Close runs while sessions open,
// lock, unlock and close on other goroutines. Every lock connection is
// given back or closed, so Close returns (it waits for the lock pool).
func TestPostgresCloseWhileSessionsClose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for round := range 5 {
		s, err := Open(ctx, newPostgresDSN(t), WithMaxLockConns(4))
		if err != nil {
			t.Fatal(err)
		}
		var cycles atomic.Int64
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for {
					sess, err := s.LockSession(ctx)
					if err != nil {
						return // the store closed
					}
					unlock, err := sess.Lock(ctx, fmt.Sprint("key ", w%3))
					if err == nil {
						cycles.Add(1)
						unlock()
					}
					sess.Close()
					if err != nil {
						return
					}
				}
			})
		}
		for cycles.Load() < 20 {
			time.Sleep(time.Millisecond)
		}
		closed := make(chan struct{})
		go func() { s.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: Close has not returned after 30 s: a lock connection was neither released nor closed", round)
		}
		wg.Wait()
	}
}

func TestPostgresUpgradeBackfillsSummaries(t *testing.T) {
	t.Parallel()
	dsn := newPostgresDSN(t)
	pool, err := connectPostgres(context.Background(), dsn, newOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	sqlDB := stdlib.OpenDBFromPool(pool)
	defer pool.Close()
	defer sqlDB.Close()
	testUpgradeBackfillsSummaries(t, dsn, sqlDB, BackendPostgres)
}
