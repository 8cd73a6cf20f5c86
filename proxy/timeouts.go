package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/store"
)

// boundSessionChecks returns st with its session lookup bounded by limit
// (SESSION_CHECK_TIMEOUT). The lookup is what a request waits for when its
// session is not cached; a database that has stopped answering would
// otherwise hold the request (and the client) for as long as the
// statement's own bound, or, waiting for a pooled connection, longer. Past
// the limit the lookup is ErrUnavailable, which the gateway answers with
// 503 and nothing forwarded.
func boundSessionChecks(st store.Store, limit time.Duration) store.Store {
	return sessionCheckBound{Store: st, limit: limit}
}

type sessionCheckBound struct {
	store.Store
	limit time.Duration
}

func (b sessionCheckBound) Session(ctx context.Context, id string) (auth.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, b.limit)
	defer cancel()
	s, err := b.Store.Session(ctx, id)
	if err != nil && !errors.Is(err, auth.ErrNotFound) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// Whatever the store made of the deadline, it means the same; the
		// log names the setting that cut it.
		if !errors.Is(err, auth.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", auth.ErrUnavailable, err)
		}
		err = fmt.Errorf("session not checked within SESSION_CHECK_TIMEOUT (%s): %w", b.limit, err)
	}
	return s, err
}
