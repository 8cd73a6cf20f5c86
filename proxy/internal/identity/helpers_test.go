package identity_test

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zaptest"

	"github.com/authsidecar/authsidecar/internal/testkit"
	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/identity"
	"github.com/authsidecar/authsidecar/proxy/internal/password"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
)

// t0 is the fake clock's start: whole microseconds, as PostgreSQL keeps them.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

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

// cheap keeps hashing fast under -race; the logic is the same as at OWASP
// cost.
var cheap = password.Params{Memory: 64, Time: 1, Threads: 1}

func newHasher(t *testing.T, opts password.Options) *password.Hasher {
	t.Helper()
	if opts.Params == (password.Params{}) {
		opts.Params = cheap
	}
	if opts.Share == 0 {
		opts.Share = 1 // no rest between hashes: the tests' slots are theirs alone
	}
	h, err := password.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// schemaURL returns the URL of a fresh, migrated schema whose pools hold
// up to maxConns connections.
func schemaURL(t *testing.T, maxConns int) string {
	t.Helper()
	u, err := url.Parse(testkit.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_max_conns", strconv.Itoa(maxConns))
	u.RawQuery = q.Encode()
	raw := u.String()

	pool := openPool(t, raw)
	ctx := context.Background()
	m, err := postgres.NewMigrator(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	return raw
}

func openPool(t *testing.T, raw string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// lockout is the policy most tests use: 5 failures, 1 minute, up to 1 hour.
var lockout = identity.Lockout{MaxFailures: 5, Duration: time.Minute, MaxDuration: time.Hour}

// fixture is a Service on a fresh schema with one user, dev/1111 with
// password "1111", and the clock it runs on.
type fixture struct {
	svc   *identity.Service
	store *postgres.Store
	clock *clock
	user  auth.User
}

func newFixture(t *testing.T, pol identity.Lockout) *fixture {
	t.Helper()
	store := postgres.NewStore(openPool(t, schemaURL(t, 4)))
	return newFixtureOn(t, store, pol)
}

func newFixtureOn(t *testing.T, store identity.Store, pol identity.Lockout) *fixture {
	t.Helper()
	c := newClock()
	svc := identity.New(store, newHasher(t, password.Options{}), pol, c.Now, zaptest.NewLogger(t))
	u, err := svc.AddUser(context.Background(), "dev", "1111", "1111", false)
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := store.(*postgres.Store)
	return &fixture{svc: svc, store: ps, clock: c, user: u}
}

func (f *fixture) login(pw string) (auth.User, error) {
	return f.svc.Authenticate(context.Background(), "dev", "1111", pw)
}

// fail makes n wrong-password logins, each of which must be refused as
// invalid credentials (not locked).
func (f *fixture) fail(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		if _, err := f.login("0000"); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("wrong password %d of %d: %v, want ErrInvalidCredentials", i+1, n, err)
		}
	}
}

// wantLocked fails unless err is a lockout for retry.
func wantLocked(t *testing.T, err error, retry time.Duration) {
	t.Helper()
	var locked *auth.LockedOutError
	if !errors.As(err, &locked) {
		t.Fatalf("got %v, want *auth.LockedOutError", err)
	}
	if locked.RetryAfter != retry {
		t.Fatalf("RetryAfter %v, want %v", locked.RetryAfter, retry)
	}
}
