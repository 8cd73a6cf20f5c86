package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/store"
)

// hungStore's session lookup waits for as long as its context lets it,
// as a call to a database that stopped answering would.
type hungStore struct{ store.Store }

func (hungStore) Session(ctx context.Context, id string) (auth.Session, error) {
	<-ctx.Done()
	return auth.Session{}, ctx.Err()
}

// goneStore knows at once that there is no such session.
type goneStore struct{ store.Store }

func (goneStore) Session(ctx context.Context, id string) (auth.Session, error) {
	return auth.Session{}, auth.ErrNotFound
}

// A session lookup that outlasts SESSION_CHECK_TIMEOUT is ErrUnavailable
// (503), whatever error the store made of its deadline; a store's own
// answer is left as it is.
func TestSessionChecksAreBounded(t *testing.T) {
	t.Parallel()
	_, err := boundSessionChecks(hungStore{}, 10*time.Millisecond).Session(context.Background(), "s")
	if !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("hung lookup: %v, want ErrUnavailable", err)
	}
	_, err = boundSessionChecks(goneStore{}, 10*time.Millisecond).Session(context.Background(), "s")
	if !errors.Is(err, auth.ErrNotFound) || errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("unknown session: %v, want ErrNotFound only", err)
	}
}
