package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testkit"
	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
)

func openWithTimeout(t *testing.T, rawURL string, d time.Duration) *postgres.Store {
	t.Helper()
	pool, err := postgres.Open(context.Background(), rawURL, nil, postgres.WithStatementTimeout(d))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	migrate(t, pool)
	return postgres.NewStore(pool)
}

// A statement that runs too long is cut by the server's statement_timeout
// (set at connect time on a direct connection) or the statement's own
// deadline, and the store reports ErrUnavailable.
func TestStatementTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := testkit.Role(t)
	pool, err := postgres.Open(ctx, dbURL, nil, postgres.WithStatementTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var setting string
	if err := pool.QueryRow(ctx, "SHOW statement_timeout").Scan(&setting); err != nil || setting != "300ms" {
		t.Errorf("statement_timeout on a direct connection = %q, %v; want 300ms", setting, err)
	}
	if _, err := pool.Exec(ctx, "SELECT pg_sleep(30)"); err == nil {
		t.Fatal("a 30 s statement succeeded under a 300 ms timeout")
	}

	// Through PgBouncer the startup parameter would be refused: it is not
	// sent, and the deadline alone bounds the statement.
	pb := testkit.StartPgBouncer(t)
	pooled, err := postgres.Open(ctx, pb.URL(dbURL), nil, postgres.WithStatementTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatalf("open through PgBouncer with a statement timeout: %v", err)
	}
	defer pooled.Close()
	if _, err := pooled.Exec(ctx, "SELECT pg_sleep(30)"); err == nil {
		t.Fatal("a 30 s statement through PgBouncer succeeded under a 300 ms timeout")
	}
	if err := pooled.Ping(ctx); err != nil {
		t.Fatalf("the pool did not recover after a statement hit its deadline: %v", err)
	}
}

// A database that stops answering (a relay that passes no more bytes,
// connections left open) makes store calls fail with ErrUnavailable, not
// hang, and the store works again once it answers, with no restart.
func TestHungDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	relay, through := testkit.RelayDatabase(t, testkit.URL(t))
	s := openWithTimeout(t, through, 500*time.Millisecond)
	if _, err := s.AddUser(ctx, "VR-1", "u", "hash", false); err != nil {
		t.Fatal(err)
	}

	// Idle for over a second, the pool pings a connection before handing
	// it out: that ping must be bounded too.
	time.Sleep(1500 * time.Millisecond)

	relay.Pause()
	returns(t, relay, func() {
		if _, err := s.Session(ctx, "some-session"); !errors.Is(err, auth.ErrUnavailable) {
			t.Errorf("Session on a hung database: %v, want ErrUnavailable", err)
		}
		if _, _, err := s.UserCredentials(ctx, "VR-1", "u"); !errors.Is(err, auth.ErrUnavailable) {
			t.Errorf("UserCredentials on a hung database: %v, want ErrUnavailable", err)
		}
		if _, err := s.RevokeDevice(ctx, "VR-1", "", time.Now()); !errors.Is(err, auth.ErrUnavailable) {
			t.Errorf("RevokeDevice on a hung database: %v, want ErrUnavailable", err)
		}
	})
	relay.Resume()

	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, err := s.UserCredentials(ctx, "VR-1", "u")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store did not recover after the database answered again: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// returns fails the test if f has not returned after a minute: a call that
// hangs would otherwise hang the test until go test's own timeout, with no
// word of which call it was. (A bound far above any statement timeout of
// these tests: it tells a hang from slowness, and measures nothing.)
func returns(t *testing.T, relay *testkit.Relay, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		relay.Resume() // so that the stuck call, and the pool, can end
		<-done
		t.Fatal("a store call on a hung database did not return")
	}
}
