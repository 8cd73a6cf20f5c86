package session_test

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/authsidecar/authsidecar/internal/testkit"
	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
	"github.com/authsidecar/authsidecar/proxy/internal/token"
)

// t0 is the fake clock's start, on a whole second like token times.
var t0 = testkit.T0

// defaults is the contract's configuration, with a TTL short enough to
// reason about.
var defaults = session.Config{TTL: time.Hour, MaxAge: 24 * time.Hour, RefreshGrace: 10 * time.Second}

// fixture is a Manager on a fresh, migrated schema with two users on device
// "dev" (alice, an admin, and bob) and one on device "other" (carol).
type fixture struct {
	m                 *session.Manager
	store             *postgres.Store
	pool              *pgxpool.Pool
	clock             *testkit.Clock
	signer            *token.Signer
	url               string
	alice, bob, carol auth.User
}

func (f *fixture) logger(t *testing.T) *zap.Logger { return zaptest.NewLogger(t) }

func newFixture(t *testing.T, cfg session.Config) *fixture {
	t.Helper()
	return newFixtureConns(t, cfg, 4)
}

func newFixtureConns(t *testing.T, cfg session.Config, maxConns int) *fixture {
	t.Helper()
	u, err := url.Parse(testkit.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_max_conns", strconv.Itoa(maxConns))
	u.RawQuery = q.Encode()
	pool, err := pgxpool.New(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ctx := context.Background()
	mig, err := postgres.NewMigrator(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer mig.Close()
	if _, err := mig.Up(ctx); err != nil {
		t.Fatal(err)
	}

	c := testkit.NewClock(t0)
	key, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.New([]token.Key{key}, token.Options{Issuer: "test", Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	store := postgres.NewStore(pool)
	f := &fixture{
		m:     session.NewManager(store, signer, cfg, c.Now, zaptest.NewLogger(t)),
		store: store, pool: pool, clock: c, signer: signer, url: u.String(),
	}
	if cfg.Cache != nil {
		f.listen(t, u.String(), cfg.Cache)
	}
	f.alice = f.addUser(t, "dev", "alice", true)
	f.bob = f.addUser(t, "dev", "bob", false)
	f.carol = f.addUser(t, "other", "carol", false)
	return f
}

func (f *fixture) addUser(t *testing.T, device, name string, admin bool) auth.User {
	t.Helper()
	u, err := f.store.AddUser(context.Background(), device, name, "not-a-real-hash", admin)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (f *fixture) login(t *testing.T, u auth.User) session.Issued {
	t.Helper()
	iss, err := f.m.Create(context.Background(), u, session.Client{Addr: "192.0.2.1:4000", UserAgent: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// wantOK fails unless raw authenticates, and returns its caller.
func (f *fixture) wantOK(t *testing.T, raw string) session.Caller {
	t.Helper()
	c, err := f.m.Authenticate(context.Background(), raw)
	if err != nil {
		t.Fatalf("Authenticate: %v, want a live session", err)
	}
	return c
}

// wantRefused fails unless raw is refused as an invalid token.
func (f *fixture) wantRefused(t *testing.T, raw, why string) {
	t.Helper()
	c, err := f.m.Authenticate(context.Background(), raw)
	if !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("%s: Authenticate = %v, want ErrInvalidToken", why, err)
	}
	if c != (session.Caller{}) {
		t.Fatalf("%s: refused but returned a caller: %+v", why, c)
	}
}

// rows counts the sessions table's rows with id.
func (f *fixture) rows(t *testing.T, id string) int {
	t.Helper()
	var n int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM sessions WHERE id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// listen feeds cache from a real listener on the fixture's schema, as the
// proxy does, and waits until it is listening.
func (f *fixture) listen(t *testing.T, dbURL string, cache *session.Cache) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	l := &postgres.Listener{URL: dbURL, Changed: cache.Evict, State: cache.SetListening, Log: zaptest.NewLogger(t)}
	go func() { defer close(done); l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for !cache.Listening() {
		if time.Now().After(deadline) {
			t.Fatal("listener did not come up")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
