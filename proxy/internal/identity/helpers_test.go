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

// newClock is a fake clock at t0 that tests advance by hand.
func newClock() *testkit.Clock { return testkit.NewClock(t0) }

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
	clock *testkit.Clock
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

// slotGate is a Hasher's clock (password.Options.Now) that can keep a hash
// in its slot: a hash asks the time once it holds a slot, and while a hold
// is armed that call waits until the test lets it go. A test thus holds
// the slot exactly as long as it needs, however loaded the machine, rather
// than relying on a heavy hash lasting long enough.
type slotGate struct {
	mu   sync.Mutex
	open chan struct{} // closed to let the held hash go on; nil when no hold is armed
	held chan struct{} // closed once a hash is held
}

// now is the Hasher's clock. The time it tells is constant: hashes then
// take no time by that clock, and no slot rests after one.
func (g *slotGate) now() time.Time {
	g.mu.Lock()
	open, held := g.open, g.held
	g.open, g.held = nil, nil
	g.mu.Unlock()
	if held != nil {
		close(held)
		<-open
	}
	return t0
}

// hold occupies h's only slot (h must use g.now) and returns once it is
// taken; release frees it and waits for the hash that held it.
func (g *slotGate) hold(t *testing.T, h *password.Hasher) (release func()) {
	t.Helper()
	open, held := make(chan struct{}), make(chan struct{})
	g.mu.Lock()
	g.open, g.held = open, held
	g.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		// An empty hash verifies the hasher's dummy: any hash will do.
		_, err := h.Verify(context.Background(), "x", "")
		done <- err
	}()
	select {
	case <-held:
	case err := <-done:
		t.Fatalf("the hash meant to hold the slot ended without holding it: %v", err)
	}
	return func() {
		t.Helper()
		close(open)
		if err := <-done; err != nil {
			t.Fatalf("the hash that held the slot: %v", err)
		}
	}
}

// expiringContext runs out of time when the test says so, not at a moment
// of the wall clock: a deadline then cannot fall on a slow store call
// instead of the wait it is meant for.
type expiringContext struct {
	context.Context
	done chan struct{}
	once sync.Once
}

type expiringKey struct{}

func newExpiringContext(parent context.Context) *expiringContext {
	return &expiringContext{Context: parent, done: make(chan struct{})}
}

func (c *expiringContext) Done() <-chan struct{} { return c.done }

func (c *expiringContext) Err() error {
	if c.expired() {
		return context.DeadlineExceeded
	}
	return nil
}

// Value finds the expiringContext even under contexts derived from it.
func (c *expiringContext) Value(key any) any {
	if key == (expiringKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func (c *expiringContext) expire() { c.once.Do(func() { close(c.done) }) }

func (c *expiringContext) expired() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// expiringStore is the real store; once it has looked an account's
// credentials up under an expiringContext, that context runs out. What
// comes next in a login, the wait for the hasher, meets the deadline.
type expiringStore struct {
	*postgres.Store
}

func (s *expiringStore) UserCredentials(ctx context.Context, deviceID, username string) (auth.User, string, error) {
	u, hash, err := s.Store.UserCredentials(ctx, deviceID, username)
	if c, ok := ctx.Value(expiringKey{}).(*expiringContext); ok {
		c.expire()
	}
	return u, hash, err
}
