package postgres_test

import (
	"context"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/pgtest"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
)

// t0 is the fake clock's start: whole microseconds, as PostgreSQL keeps them.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)

// clock is a fake clock that tests advance by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

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
	u := pgtest.URL(t)
	if maxConns > 0 {
		u = withMaxConns(t, u, maxConns)
	}
	pool := openPool(t, u)
	migrate(t, pool)
	return postgres.NewStore(pool), pool
}

func addUser(t *testing.T, s *postgres.Store, deviceID, username string, isAdmin bool) auth.User {
	t.Helper()
	u, err := s.AddUser(context.Background(), deviceID, username, "hash-of-"+username, isAdmin)
	if err != nil {
		t.Fatalf("add user %s/%s: %v", deviceID, username, err)
	}
	return u
}

var sessionSeq struct {
	mu sync.Mutex
	n  int
}

// newSession stores a session of user created at created that expires ttl
// later, and returns it.
func newSession(t *testing.T, s *postgres.Store, u auth.User, created time.Time, ttl time.Duration) auth.Session {
	t.Helper()
	sessionSeq.mu.Lock()
	sessionSeq.n++
	id := "sess-" + strconv.Itoa(sessionSeq.n)
	sessionSeq.mu.Unlock()
	sess := auth.Session{
		ID: id, DeviceID: u.DeviceID, UserID: u.ID, Username: u.Username, IsAdmin: u.IsAdmin,
		CreatedAt: created, ExpiresAt: created.Add(ttl),
	}
	if err := s.CreateSession(context.Background(), sess); err != nil {
		t.Fatalf("create session: %v", err)
	}
	return sess
}
