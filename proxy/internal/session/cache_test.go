package session_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/metrics"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
)

func withCache(cfg session.Config) session.Config {
	cfg.Cache = session.NewCache(1000)
	return cfg
}

// eventually polls cond until it holds: notifications cross connections
// asynchronously.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestCacheServesWithoutStore: a cached session is answered with the store
// gone entirely, which proves the hit costs no query.
func TestCacheServesWithoutStore(t *testing.T) {
	t.Parallel()
	f := newFixture(t, withCache(defaults))
	iss := f.login(t, f.bob)
	f.wantOK(t, iss.Token) // miss: read and cached
	f.pool.Close()
	c := f.wantOK(t, iss.Token)
	if c.Session.ID != iss.Session.ID || c.Session.Username != "bob" || c.Session.DeviceID != "dev" {
		t.Fatalf("cached caller %+v", c.Session)
	}
}

// TestCreatedSessionIsCachedAtOnce: a session created on this replica is
// answered from memory from its first request, exactly as a read of the
// store would answer it.
func TestCreatedSessionIsCachedAtOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, withCache(defaults))
	f.clock.Advance(123456789 * time.Nanosecond) // finer than the store keeps
	iss := f.login(t, f.bob)
	fromStore, err := f.store.Session(context.Background(), iss.Session.ID)
	if err != nil {
		t.Fatal(err)
	}
	f.pool.Close() // a query now would fail
	c := f.wantOK(t, iss.Token)
	got, want := c.Session, fromStore
	// The client address and user agent are for operators: not cached.
	want.ClientAddr, want.UserAgent = "", ""
	// Printed, so that times compare in one location, to the nanosecond.
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Fatalf("cached at creation:\n%+v\nthe store reads:\n%+v", got, want)
	}
}

// TestCacheLosingListenerFailsClosed: without a listener the cache answers
// nothing, so a store that is gone means 503, not a stale yes.
func TestCacheLosingListenerFailsClosed(t *testing.T) {
	t.Parallel()
	cfg := withCache(defaults)
	f := newFixture(t, cfg)
	iss := f.login(t, f.bob)
	f.wantOK(t, iss.Token)
	cfg.Cache.SetListening(false)
	f.pool.Close()
	if _, err := f.m.Authenticate(context.Background(), iss.Token); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("Authenticate = %v, want ErrUnavailable once the listener is lost", err)
	}
}

// TestFailingClosedIsCounted: a session checked in the store because the
// replica does not listen is counted as a bypass of the cache, not as a
// miss, so that an operator sees the cache failing closed.
func TestFailingClosedIsCounted(t *testing.T) {
	t.Parallel()
	cfg := withCache(defaults)
	cfg.Metrics = metrics.New()
	f := newFixture(t, cfg)
	iss := f.login(t, f.bob)
	f.wantOK(t, iss.Token) // a hit: cached when created
	cfg.Cache.Evict(iss.Session.ID)
	f.wantOK(t, iss.Token) // a miss
	cfg.Cache.SetListening(false)
	f.wantOK(t, iss.Token) // from the store: a bypass
	rec := httptest.NewRecorder()
	cfg.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range []string{
		`authsidecar_cache_requests_total{cache="session",result="hit"} 1`,
		`authsidecar_cache_requests_total{cache="session",result="miss"} 1`,
		`authsidecar_cache_requests_total{cache="session",result="bypass"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), "\n"+line+"\n") {
			t.Errorf("no line %q in the scrape", line)
		}
	}
}

// TestCacheEvictedByChangeOnAnotherReplica: two managers (two replicas)
// on one schema; what one ends, the other stops accepting.
func TestCacheEvictedByChangeOnAnotherReplica(t *testing.T) {
	t.Parallel()
	a := newFixture(t, withCache(defaults))
	iss := a.login(t, a.bob)
	// Replica B shares the schema, signer and clock, with a cache of its own.
	bCfg := withCache(defaults)
	b := &fixture{m: session.NewManager(a.store, a.signer, bCfg, a.clock.Now, a.logger(t)), store: a.store, pool: a.pool, clock: a.clock, signer: a.signer}
	b.listen(t, a.url, bCfg.Cache)
	b.wantOK(t, iss.Token) // cached on B
	if err := a.m.Logout(context.Background(), a.wantOK(t, iss.Token)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B still accepts a logged-out session", func() bool {
		_, err := b.m.Authenticate(context.Background(), iss.Token)
		return errors.Is(err, auth.ErrInvalidToken)
	})
}

// TestCacheRefreshOnAnotherReplica: a token refreshed on A works on B at
// once (B asks the store about a generation it does not know), and the old
// token's grace ends on B too.
func TestCacheRefreshOnAnotherReplica(t *testing.T) {
	t.Parallel()
	a := newFixture(t, withCache(defaults))
	iss := a.login(t, a.bob)
	bCfg := withCache(defaults)
	b := &fixture{m: session.NewManager(a.store, a.signer, bCfg, a.clock.Now, a.logger(t)), store: a.store, pool: a.pool, clock: a.clock, signer: a.signer}
	b.listen(t, a.url, bCfg.Cache)
	b.wantOK(t, iss.Token)

	fresh, err := a.m.Refresh(context.Background(), a.wantOK(t, iss.Token))
	if err != nil {
		t.Fatal(err)
	}
	b.wantOK(t, fresh.Token)
	b.wantOK(t, iss.Token) // inside the grace
	a.clock.Advance(defaults.RefreshGrace + time.Second)
	b.wantRefused(t, iss.Token, "old token after the grace, on B")
	b.wantOK(t, fresh.Token)
}

// TestCacheRevokedBySQL: an operator's hand-written UPDATE evicts too (the
// notification comes from a trigger, not from the proxy's code).
func TestCacheRevokedBySQL(t *testing.T) {
	t.Parallel()
	f := newFixture(t, withCache(defaults))
	iss := f.login(t, f.bob)
	f.wantOK(t, iss.Token)
	if _, err := f.pool.Exec(context.Background(), `UPDATE sessions SET revoked_at = now() WHERE id = $1`, iss.Session.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a session revoked in SQL is still accepted", func() bool {
		_, err := f.m.Authenticate(context.Background(), iss.Token)
		return errors.Is(err, auth.ErrInvalidToken)
	})
}

// TestExpiredTokenMetAgainCostsNothing: a device retrying an expired token
// is refused from the cache: no signature check, no database write (the
// store is gone, and the answer is still "invalid token", not 503).
func TestExpiredTokenMetAgainCostsNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, withCache(defaults))
	iss := f.login(t, f.bob)
	f.wantOK(t, iss.Token) // verified and cached while valid
	f.clock.Advance(defaults.TTL)
	f.wantRefused(t, iss.Token, "expired, first time")
	if n := f.rows(t, iss.Session.ID); n != 0 {
		t.Fatalf("expired session met: %d rows left", n)
	}
	f.pool.Close()
	for range 3 {
		f.wantRefused(t, iss.Token, "expired, met again with the store gone")
	}
}
