package session_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/authsidecar/authsidecar/proxy/internal/session"
)

const idleTimeout = 40 * time.Minute

// withIdle is cfg with the idle timeout, and lifetimes long enough for a
// test to go idle within them.
func withIdle(cfg session.Config) session.Config {
	cfg.IdleTimeout = idleTimeout
	cfg.TTL, cfg.MaxAge = 24*time.Hour, 48*time.Hour
	return cfg
}

// TestIdleSessionIsRefused: a session used within the timeout lives on;
// one left unused for longer is refused (and revoked for every replica).
func TestIdleSessionIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, withIdle(defaults))
	iss := f.login(t, f.bob)
	for range 4 { // an hour and more in all, never idle for long
		f.clock.Advance(idleTimeout * 9 / 10)
		f.wantOK(t, iss.Token)
		f.m.FlushUses(context.Background())
	}
	f.clock.Advance(idleTimeout*3/2 + time.Second)
	f.wantRefused(t, iss.Token, "idle for 1.5 × the timeout")
	s, err := f.store.Session(context.Background(), iss.Session.ID)
	if err != nil || s.RevokedAt.IsZero() {
		t.Fatalf("the idle session is not revoked: %v, %v", s.RevokedAt, err)
	}
}

// TestIdleAcrossReplicas: a session used only on replica A is not refused
// on replica B, which never saw the uses: B asks the store, which A keeps
// up to date in batches, without a write per request.
func TestIdleAcrossReplicas(t *testing.T) {
	t.Parallel()
	f := newFixture(t, withIdle(defaults))
	b := session.NewManager(f.store, f.signer, withIdle(defaults), f.clock.Now, zaptest.NewLogger(t))
	iss := f.login(t, f.bob)
	if _, err := b.Authenticate(context.Background(), iss.Token); err != nil {
		t.Fatal(err)
	}
	for range 8 { // two timeouts of use on A, a request every quarter
		f.clock.Advance(idleTimeout / 4)
		f.wantOK(t, iss.Token)
		f.m.FlushUses(context.Background())
	}
	if _, err := b.Authenticate(context.Background(), iss.Token); err != nil {
		t.Fatalf("replica B refused a session used on A within the timeout: %v", err)
	}
	f.clock.Advance(idleTimeout*3/2 + time.Second)
	if _, err := b.Authenticate(context.Background(), iss.Token); err == nil {
		t.Fatal("replica B accepted a session idle for 1.5 × the timeout")
	}
	f.wantRefused(t, iss.Token, "idle, revoked by replica B")
}

// TestNoIdleTimeoutNoRecord: without the setting, uses are not recorded.
func TestNoIdleTimeoutNoRecord(t *testing.T) {
	t.Parallel()
	cfg := defaults
	cfg.TTL, cfg.MaxAge = 24*time.Hour, 48*time.Hour
	f := newFixture(t, cfg)
	iss := f.login(t, f.bob)
	f.clock.Advance(23 * time.Hour)
	f.wantOK(t, iss.Token)
	f.m.FlushUses(context.Background())
	s, err := f.store.Session(context.Background(), iss.Session.ID)
	if err != nil || !s.LastSeenAt.Equal(s.CreatedAt) {
		t.Fatalf("last seen %v (created %v), %v: recorded without an idle timeout", s.LastSeenAt, s.CreatedAt, err)
	}
}

// TestIdleWithTheCache: the cached session's record of its last use is
// only a lower bound; the timeout holds the same with the cache on.
func TestIdleWithTheCache(t *testing.T) {
	t.Parallel()
	f := newFixture(t, withCache(withIdle(defaults)))
	iss := f.login(t, f.bob)
	for range 3 {
		f.clock.Advance(idleTimeout * 9 / 10)
		f.wantOK(t, iss.Token)
		f.m.FlushUses(context.Background())
	}
	f.clock.Advance(idleTimeout*3/2 + time.Second)
	f.wantRefused(t, iss.Token, "idle, though cached")
}
