package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// insertExpired adds n sessions of device that expired an hour ago.
func insertExpired(t *testing.T, dbURL, device string, n int) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(context.Background(), `
		INSERT INTO sessions (id, device_id, created_at, expires_at)
		SELECT 'expired-' || g, $1, now() - interval '2 hours', now() - interval '1 hour'
		FROM generate_series(1, $2) g`, device, n)
	if err != nil {
		t.Fatal(err)
	}
}

func countSessions(t *testing.T, dbURL string) (total, expired int) {
	t.Helper()
	query(t, dbURL, `SELECT count(*), count(*) FILTER (WHERE expires_at <= now()) FROM sessions`, nil, &total, &expired)
	return total, expired
}

func TestCleanupCommandDeletesExpiredSessions(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "1111", "1111", false)
	live := login(t, s.Proxy, device, "1111", "1111")
	insertExpired(t, s.DB, device, 1234)
	out, stderr, code := s.CommandOutput("", "sessions", "cleanup")
	if code != 0 || out != "deleted 1234 expired session(s)\n" || !strings.HasPrefix(stderr, "store: PostgreSQL ") {
		t.Fatalf("sessions cleanup: exit %d: stdout %q, stderr %q", code, out, stderr)
	}
	if total, expired := countSessions(t, s.DB); total != 1 || expired != 0 {
		t.Fatalf("after cleanup: %d sessions, %d expired; want the 1 live one", total, expired)
	}
	if !works(t, s.Proxy, live.Token) {
		t.Fatal("cleanup ended a live session")
	}
}

// TestJanitorCleansBacklogWhileLoginsWork: 100k expired rows are deleted by
// the background janitor in batches while logins go on succeeding.
func TestJanitorCleansBacklogWhileLoginsWork(t *testing.T) {
	t.Parallel()
	db := databaseURL(t)
	backend := start(t, backendBin, map[string]string{"DATABASE_URL": db})
	s := &stack{t: t, DB: db, Backend: backend, proxyEnv: map[string]string{
		"DATABASE_URL": db, "UPSTREAM_URL": backend.URL(), "METRICS_ADDR": "127.0.0.1:0",
	}}
	// Migrate and create the user before the proxy (and its janitor) runs.
	if out, code := s.Command("", "migrate", "up"); code != 0 {
		t.Fatalf("migrate: %s", out)
	}
	s.AddUser(device, "1111", "1111", false)
	insertExpired(t, db, device, 100_000)

	s.Proxy = s.StartProxy() // the janitor's first round runs at start
	logins := 0
	deadline := time.Now().Add(90 * time.Second)
	for {
		r := do(t, "POST", s.Proxy.URL()+"/api/auth/login", "", map[string]string{"deviceId": device, "username": "1111", "password": "1111"})
		if r.Status != http.StatusOK {
			t.Fatalf("login %d during cleanup: %d %s", logins, r.Status, r.Body)
		}
		logins++
		if _, expired := countSessions(t, db); expired == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("janitor did not clear the backlog in 90s")
		}
	}
	if total, _ := countSessions(t, db); total != logins {
		t.Fatalf("%d sessions left, want the %d live ones", total, logins)
	}
	if !strings.Contains(s.Proxy.Logs(), `"deleted":100000`) {
		t.Fatalf("janitor did not log the count:\n%s", s.Proxy.Logs())
	}
}
