package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/store"
)

// calls calls every store.Store method once, by name.
func calls(s store.Store) map[string]func(context.Context) error {
	now := T0
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
		"CountLiveSessions": func(ctx context.Context) error {
			_, err := s.CountLiveSessions(ctx, now)
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
		"DeleteStaleLoginFailures": func(ctx context.Context) error {
			_, err := s.DeleteStaleLoginFailures(ctx, now, now, 10)
			return err
		},
		"ImportUsers": func(ctx context.Context) error {
			_, err := s.ImportUsers(ctx, []auth.ImportedUser{{DeviceID: "dev", Username: "u", PasswordHash: "h"}}, false, true, now)
			return err
		},
		"CreateSessionUpgradingHash": func(ctx context.Context) error {
			return s.CreateSessionUpgradingHash(ctx, auth.Session{ID: "s", DeviceID: "dev", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, "a", "b")
		},
		"RecordEvent": func(ctx context.Context) error {
			return s.RecordEvent(ctx, auth.Event{Time: now, Type: auth.EventLoginFailed})
		},
		"ListEvents": func(ctx context.Context) error {
			_, err := s.ListEvents(ctx, auth.EventFilter{})
			return err
		},
		"DeleteEventsBefore": func(ctx context.Context) error {
			_, err := s.DeleteEventsBefore(ctx, now, 10)
			return err
		},
		"CreateSession (recorded)": func(ctx context.Context) error {
			return s.CreateSession(auth.Recording(ctx, auth.Event{Time: now, Type: auth.EventLogin}),
				auth.Session{ID: "s", DeviceID: "dev", CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
		},
		"TryExclusive": func(ctx context.Context) error {
			release, _, err := s.TryExclusive(ctx, "janitor")
			if release != nil {
				release()
			}
			return err
		},
	}
}

// CheckUnavailable fails t unless every method of s fails with
// auth.ErrUnavailable, and with none of the errors that would make a
// caller act as if the store had answered (not found, invalid token,
// conflict). Stores call it on a store that cannot answer: closed, or its
// server unreachable.
func CheckUnavailable(t *testing.T, s store.Store) {
	t.Helper()
	for name, call := range calls(s) {
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
