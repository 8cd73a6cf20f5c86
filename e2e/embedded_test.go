package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The embedded store (no DATABASE_URL) is what a newcomer meets first:
// these tests walk the same paths as the PostgreSQL ones on it.

func TestEmbeddedHeadsetFlowSurvivesRestart(t *testing.T) {
	t.Parallel()
	s := newEmbeddedStack(t, nil)
	if !strings.Contains(s.Proxy.Logs(), "store: embedded SQLite") || !strings.Contains(s.Proxy.Logs(), "several replicas") {
		t.Fatalf("the proxy does not say it runs on the embedded store:\n%s", s.Proxy.Logs())
	}
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	if r := do(t, "POST", s.Proxy.URL()+"/api/storage", lb.Token, map[string]any{"key": "test-123", "data": 1}); r.Status != http.StatusCreated {
		t.Fatalf("store: %d %s", r.Status, r.Body)
	}
	if r := do(t, "POST", s.Proxy.URL()+"/api/storage", lb.Token, map[string]any{"key": "test-123", "data": 2}); r.Status != http.StatusOK {
		t.Fatalf("replace: %d %s", r.Status, r.Body)
	}

	s.Proxy.Stop()
	if code := s.Proxy.ExitCode(); code != 0 {
		t.Fatalf("proxy exited %d", code)
	}
	s.Proxy = s.StartProxy()
	if r := do(t, "POST", s.Proxy.URL()+"/api/storage", lb.Token, map[string]any{"key": "test-124", "data": 3}); r.Status != http.StatusCreated {
		t.Fatalf("store after restart with the same token: %d %s", r.Status, r.Body)
	}
	fi, err := os.Stat(filepath.Join(s.DataDir, "proxy.db"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("proxy.db: %v %v, want mode 0600", fi, err)
	}
}

func TestEmbeddedLifecycle(t *testing.T) {
	t.Parallel()
	s := newEmbeddedStack(t, map[string]string{"REFRESH_GRACE": "0s", "LOGIN_MAX_FAILURES": "2"})
	s.AddUser(device, "admin", "9999", true)
	s.AddUser(device, "1111", "1111", false)
	s.AddUser(device, "2222", "2222", false)

	// Refresh retires the old token; logout ends the new one.
	lb := login(t, s.Proxy, device, "1111", "1111")
	r := refresh(t, s.Proxy, lb.Token)
	var fresh loginBody
	r.JSON(t, &fresh)
	if r.Status != http.StatusOK || works(t, s.Proxy, lb.Token) || !works(t, s.Proxy, fresh.Token) {
		t.Fatalf("refresh: %d %s", r.Status, r.Body)
	}
	if r := do(t, "POST", s.Proxy.URL()+"/api/auth/logout", fresh.Token, nil); r.Status != http.StatusNoContent || works(t, s.Proxy, fresh.Token) {
		t.Fatalf("logout: %d", r.Status)
	}

	// An admin sees its device's sessions; an operator's revoke from
	// another process is refused at once (no cache of sessions here).
	admin := login(t, s.Proxy, device, "admin", "9999")
	u2 := login(t, s.Proxy, device, "2222", "2222")
	if !works(t, s.Proxy, u2.Token) {
		t.Fatal("fresh token refused")
	}
	if n := len(adminSessions(t, s.Proxy, admin.Token)); n != 2 {
		t.Fatalf("admin sees %d sessions, want 2", n)
	}
	if out, code := s.Command("", "sessions", "revoke", "--device", device, "--username", "2222"); code != 0 {
		t.Fatalf("revoke: %s", out)
	}
	if works(t, s.Proxy, u2.Token) {
		t.Fatal("a session revoked by the operator still works")
	}

	// Lockout, and unlock.
	for range 2 {
		do(t, "POST", s.Proxy.URL()+"/api/auth/login", "", map[string]string{"deviceId": device, "username": "1111", "password": "0000"})
	}
	wantError(t, do(t, "POST", s.Proxy.URL()+"/api/auth/login", "", map[string]string{"deviceId": device, "username": "1111", "password": "1111"}),
		http.StatusTooManyRequests, "locked_out")
	if out, code := s.Command("", "user", "unlock", "--device", device, "--username", "1111"); code != 0 {
		t.Fatalf("unlock: %s", out)
	}
	login(t, s.Proxy, device, "1111", "1111")
}

func TestEmbeddedCleanup(t *testing.T) {
	t.Parallel()
	s := newEmbeddedStack(t, map[string]string{"TOKEN_TTL": "1s", "SESSION_MAX_AGE": "1s"})
	s.AddUser(device, "1111", "1111", false)
	login(t, s.Proxy, device, "1111", "1111")
	// The later of the two: a login waits for the password hasher, which
	// yields the CPU to everything else on a busy machine.
	last := login(t, s.Proxy, device, "1111", "1111")
	time.Sleep(time.Until(last.ExpiresAt) + 100*time.Millisecond)
	out, stderr, code := s.CommandOutput("", "sessions", "cleanup")
	if code != 0 || out != "deleted 2 expired session(s)\n" {
		t.Fatalf("cleanup: exit %d: stdout %q, stderr %q", code, out, stderr)
	}
	// The command says which store it opened: the server's.
	if want := "store: SQLite " + filepath.Join(s.DataDir, "proxy.db") + "\n"; stderr != want {
		t.Fatalf("cleanup: stderr %q, want %q", stderr, want)
	}
}
