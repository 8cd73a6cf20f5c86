package postgres_test

import (
	"context"
	"net/url"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authsidecar/authsidecar/internal/testkit"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
)

// withMaxConns returns rawURL with a pool size large enough for the
// concurrency tests, so that goroutines meet in the database, not in the
// pool's queue.
func withMaxConns(t *testing.T, rawURL string, n int) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_max_conns", strconv.Itoa(n))
	u.RawQuery = q.Encode()
	return u.String()
}

// openPool opens a pool on rawURL, closed when the test ends.
func openPool(t *testing.T, rawURL string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), rawURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// migrate applies every migration to the schema pool selects.
func migrate(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	m, err := postgres.NewMigrator(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
}

// newStore returns a Store on a fresh, migrated schema, and its pool.
func newStore(t *testing.T) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	return newStoreConns(t, 0)
}

// newStoreConns is newStore with a pool of maxConns connections (0: the
// default).
func newStoreConns(t *testing.T, maxConns int) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	u := testkit.URL(t)
	if maxConns > 0 {
		u = withMaxConns(t, u, maxConns)
	}
	pool := openPool(t, u)
	migrate(t, pool)
	return postgres.NewStore(pool), pool
}
