package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
)

// storeCalls calls every Store method once; each must fail with
// auth.ErrUnavailable on a store that cannot answer.
func storeCalls(s *postgres.Store) map[string]func(context.Context) error {
	now := t0
	return map[string]func(context.Context) error{
		"Ping": s.Ping,
		"AddUser": func(ctx context.Context) error {
			_, err := s.AddUser(ctx, "dev", "1111", "h", false)
			return err
		},
		"UserCredentials": func(ctx context.Context) error {
			_, _, err := s.UserCredentials(ctx, "dev", "1111")
			return err
		},
		"SetPassword": func(ctx context.Context) error {
			_, _, err := s.SetPassword(ctx, "dev", "1111", "h", now)
			return err
		},
		"RemoveUser": func(ctx context.Context) error {
			_, _, err := s.RemoveUser(ctx, "dev", "1111")
			return err
		},
		"ListUsers": func(ctx context.Context) error {
			_, err := s.ListUsers(ctx, "")
			return err
		},
		"CreateSession": func(ctx context.Context) error {
			return s.CreateSession(ctx, auth.Session{ID: "x", DeviceID: "dev", CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
		},
		"Session": func(ctx context.Context) error {
			_, err := s.Session(ctx, "x")
			return err
		},
		"DeleteExpiredSession": func(ctx context.Context) error {
			_, err := s.DeleteExpiredSession(ctx, "x", now)
			return err
		},
		"RefreshSession": func(ctx context.Context) error {
			_, err := s.RefreshSession(ctx, "x", 0, now, now.Add(time.Hour), now)
			return err
		},
		"RevokeSession": func(ctx context.Context) error { return s.RevokeSession(ctx, "x", "", now) },
		"RevokeDevice": func(ctx context.Context) error {
			_, err := s.RevokeDevice(ctx, "dev", "", now)
			return err
		},
		"ListSessions": func(ctx context.Context) error {
			_, err := s.ListSessions(ctx, "", now)
			return err
		},
		"DeleteExpired": func(ctx context.Context) error {
			_, err := s.DeleteExpired(ctx, now, 10)
			return err
		},
		"SigningKeyPEM": func(ctx context.Context) error {
			_, err := s.SigningKeyPEM(ctx, func() (string, []byte, error) { return "k", []byte("pem"), nil })
			return err
		},
		"ReserveLoginAttempt": func(ctx context.Context) error {
			_, _, err := s.ReserveLoginAttempt(ctx, "dev", "1111", now)
			return err
		},
		"ReleaseLoginAttempt": func(ctx context.Context) error { return s.ReleaseLoginAttempt(ctx, "dev", "1111") },
		"LockAccount": func(ctx context.Context) error {
			_, err := s.LockAccount(ctx, "dev", "1111", now, time.Minute, time.Hour)
			return err
		},
		"ResetLoginFailures": func(ctx context.Context) error {
			_, err := s.ResetLoginFailures(ctx, "dev", "1111")
			return err
		},
		"TryExclusive": func(ctx context.Context) error {
			_, _, err := s.TryExclusive(ctx, "janitor")
			return err
		},
		"DeleteStaleLoginFailures": func(ctx context.Context) error {
			_, err := s.DeleteStaleLoginFailures(ctx, now, now, 10)
			return err
		},
	}
}

// checkUnavailable fails unless every call fails with auth.ErrUnavailable,
// and with none of the errors that would make a caller act as if the store
// had answered (not found, invalid token, conflict).
func checkUnavailable(t *testing.T, s *postgres.Store) {
	t.Helper()
	for name, call := range storeCalls(s) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := call(ctx)
		cancel()
		if !errors.Is(err, auth.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", name, err)
		}
		for _, wrong := range []error{auth.ErrNotFound, auth.ErrInvalidToken, auth.ErrConflict} {
			if errors.Is(err, wrong) {
				t.Errorf("%s: %v also wraps %v", name, err, wrong)
			}
		}
	}
}

func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1.
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	checkUnavailable(t, postgres.NewStore(pool))

	if _, err := postgres.NewMigrator(context.Background(), pool); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("NewMigrator: %v, want ErrUnavailable", err)
	}
}

func TestClosedPoolIsUnavailable(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	pool.Close()
	checkUnavailable(t, s)
}
