package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authsidecar/authsidecar/internal/testkit"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
	"github.com/authsidecar/authsidecar/proxy/internal/storetest"
)

// openThrough opens a pool as the proxy does (postgres.Open) on rawURL,
// closed when the test ends.
func openThrough(t *testing.T, rawURL string) *pgxpool.Pool {
	t.Helper()
	pool, err := postgres.Open(context.Background(), rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// The whole store, migrations included, through PgBouncer in transaction
// mode: every statement may run on another server connection than the one
// before, so nothing may rely on a session (a named prepared statement, a
// session advisory lock). Each subtest has a role of its own (its schema
// the role's search_path), PgBouncer a pool per role.
func TestStoreThroughPgBouncer(t *testing.T) {
	t.Parallel()
	pb := testkit.StartPgBouncer(t)
	storetest.Run(t, func(t *testing.T) storetest.Store {
		pool := openThrough(t, withMaxConns(t, pb.URL(testkit.Role(t)), 26))
		migrate(t, pool)
		return suiteStore{postgres.NewStore(pool), pool}
	})
}

// The janitor's lock through PgBouncer, held while both replicas' pools
// run other statements. A session-level lock would stay on whichever
// server connection took it, and PgBouncer hands that connection to the
// next transaction of either replica, which would then "hold" it too.
func TestTryExclusiveThroughPgBouncer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pb := testkit.StartPgBouncer(t)
	dbURL := pb.URL(testkit.Role(t))
	p1, p2 := openThrough(t, dbURL), openThrough(t, dbURL)
	migrate(t, p1)
	s1, s2 := postgres.NewStore(p1), postgres.NewStore(p2)

	release, ok, err := s1.TryExclusive(ctx, "janitor")
	if err != nil || !ok {
		t.Fatalf("first TryExclusive = %v, %v; want the lock", ok, err)
	}
	for range 20 {
		// Traffic on both pools moves server connections between
		// clients; the holder's transaction keeps its own.
		var wg sync.WaitGroup
		for _, s := range []*postgres.Store{s1, s2} {
			wg.Go(func() {
				if err := s.Ping(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		for _, s := range []*postgres.Store{s1, s2} {
			if r, ok, err := s.TryExclusive(ctx, "janitor"); err != nil || ok {
				if ok {
					r() // or the pool, waiting for its connection, never closes
				}
				t.Fatalf("TryExclusive while held = %v, %v; want not ok", ok, err)
			}
		}
	}
	release()
	r2, ok, err := s2.TryExclusive(ctx, "janitor")
	if err != nil || !ok {
		t.Fatalf("after release = %v, %v; want the lock", ok, err)
	}
	r2()
}

// Open keeps pgx's named prepared statements on a direct connection and
// uses PooledExecMode through PgBouncer; a mode in the URL wins.
func TestOpenChoosesQueryMode(t *testing.T) {
	t.Parallel()
	direct := testkit.Role(t)
	pb := testkit.StartPgBouncer(t)
	for _, tc := range []struct {
		url  string
		want pgx.QueryExecMode
	}{
		{direct, pgx.QueryExecModeCacheStatement},
		{pb.URL(direct), postgres.PooledExecMode},
		{direct + "&default_query_exec_mode=exec", pgx.QueryExecModeExec},
		{pb.URL(direct) + "&default_query_exec_mode=simple_protocol", pgx.QueryExecModeSimpleProtocol},
	} {
		pool := openThrough(t, tc.url)
		if got := pool.Config().ConnConfig.DefaultQueryExecMode; got != tc.want {
			t.Errorf("%s: query mode %v, want %v", tc.url, got, tc.want)
		}
		if err := pool.Ping(context.Background()); err != nil {
			t.Error(err)
		}
	}
}
