package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testkit"
)

// TestBehindPgBouncer: two proxy replicas and the storage backend with
// DATABASE_URL through PgBouncer in transaction mode, and the proxies'
// LISTEN on a direct connection (DATABASE_LISTEN_URL). Migrations at start,
// logins, forwarding, revocation across replicas and the janitor all work;
// nothing in the logs speaks of a prepared statement or a failed lock.
func TestBehindPgBouncer(t *testing.T) {
	t.Parallel()
	direct := testkit.Role(t) // dropped after PgBouncer stops
	pb := testkit.StartPgBouncer(t)
	pooled := pb.URL(direct)
	s := newStackOn(t, pooled, map[string]string{
		"DATABASE_LISTEN_URL": direct,
		"CLEANUP_INTERVAL":    "1s",
	})
	b := s.StartProxy()
	s.AddUser(device, "1111", "1111", false)
	s.AddUser(device, "2222", "2222", false)
	s.AddUser("VR-DEVICE-003", "3333", "3333", false)
	for _, p := range []*process{s.Proxy, b} {
		waitFor(t, 30*time.Second, "listener up on "+p.Addr, func() bool { return scrape(t, p, "authsidecar_listener_up") == 1 })
	}

	// Logins on both replicas; records written through one, read through
	// the other.
	u1 := login(t, s.Proxy, device, "1111", "1111")
	u2 := login(t, b, device, "2222", "2222")
	for i, tok := range []string{u1.Token, u2.Token} {
		r := do(t, "POST", s.Proxy.URL()+"/api/storage", tok, map[string]any{"key": "k" + string(rune('a'+i)), "data": map[string]int{"n": i}})
		if r.Status != http.StatusCreated {
			t.Fatalf("store through A: %d %s", r.Status, r.Body)
		}
	}
	if r := do(t, "GET", b.URL()+"/api/storage/ka", u1.Token, nil); r.Status != http.StatusOK {
		t.Fatalf("read through B: %d %s", r.Status, r.Body)
	}

	// Revocation: cached on B, logged out on A, refused on B.
	if !works(t, b, u1.Token) {
		t.Fatal("u1 refused on B")
	}
	if r := do(t, "POST", s.Proxy.URL()+"/api/auth/logout", u1.Token, nil); r.Status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	refusedSoon(t, b, u1.Token)
	// An operator's revocation through PgBouncer, heard on both.
	if out, code := s.Command("", "sessions", "revoke", "--device", device, "--username", "2222"); code != 0 {
		t.Fatal(out)
	}
	refusedSoon(t, s.Proxy, u2.Token)
	refusedSoon(t, b, u2.Token)

	// The janitor, one replica at a time under a transaction-level lock.
	insertExpired(t, direct, device, 500)
	waitFor(t, 30*time.Second, "the janitor deleted the expired sessions", func() bool {
		_, expired := countSessions(t, direct)
		return expired == 0
	})
	// A second backlog, to see both replicas' rounds come and go.
	insertExpired(t, direct, "VR-DEVICE-003", 300)
	waitFor(t, 30*time.Second, "the janitor deleted the second backlog", func() bool {
		_, expired := countSessions(t, direct)
		return expired == 0
	})

	// A fresh login still works, and a migrate command through PgBouncer
	// finds nothing to do.
	login(t, b, device, "1111", "1111")
	if out, code := s.Command("", "migrate", "up"); code != 0 {
		t.Fatalf("migrate up through PgBouncer: %s", out)
	}
	for _, p := range []*process{s.Proxy, b, s.Backend} {
		logs := p.Logs()
		for _, bad := range []string{"prepared statement", "lock failed", "cleanup failed", "lost the session-change listener"} {
			if strings.Contains(logs, bad) {
				t.Errorf("%s logged %q:\n%s", p.name, bad, logs)
			}
		}
	}
	if logs := s.Proxy.Logs() + b.Logs(); !strings.Contains(logs, `"deleted":500`) || !strings.Contains(logs, `"deleted":300`) {
		t.Errorf("the janitor did not log its deletions:\n%s", logs)
	}
}

// TestListenThroughPgBouncerStaysDown: DATABASE_URL through PgBouncer in
// transaction mode and no DATABASE_LISTEN_URL, the mistake the setting
// exists for. A LISTEN made through the pooler never hears what is
// committed; the listener's probe finds that out before it caches
// anything, so the replica stays uncached (every request checked in the
// database, revocations effective at once) and says what to set.
func TestListenThroughPgBouncerStaysDown(t *testing.T) {
	t.Parallel()
	direct := testkit.Role(t)
	pb := testkit.StartPgBouncer(t)
	s := newStackOn(t, pb.URL(direct), map[string]string{"LISTENER_HEALTH_INTERVAL": "300ms"})
	s.AddUser(device, "1111", "1111", false)
	waitFor(t, 30*time.Second, "the replica did not say to set DATABASE_LISTEN_URL", func() bool {
		return strings.Contains(s.Proxy.Logs(), "set DATABASE_LISTEN_URL to a direct connection")
	})
	tok := login(t, s.Proxy, device, "1111", "1111").Token
	if !works(t, s.Proxy, tok) {
		t.Fatal("session refused")
	}
	if out, code := s.Command("", "sessions", "revoke", "--device", device); code != 0 {
		t.Fatal(out)
	}
	if works(t, s.Proxy, tok) {
		t.Fatal("a revoked session was accepted: the replica cached it without hearing revocations")
	}
	if up := scrape(t, s.Proxy, "authsidecar_listener_up"); up != 0 {
		t.Fatalf("listener_up = %v through PgBouncer, want 0", up)
	}
}
