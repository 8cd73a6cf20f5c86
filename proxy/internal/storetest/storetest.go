// Package storetest is the one behavioural test suite of the proxy's
// stores. The PostgreSQL store and the embedded SQLite store both run it
// (from their own tests, each on a fresh database), so that neither drifts
// from the other: what a caller can observe — results, errors, times to the
// microsecond, concurrency — is specified here once.
package storetest

import (
	"context"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/identity"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
)

// Backend is everything the proxy keeps: the store interface of package
// main (proxy/app.go), restated because package main cannot be imported.
type Backend interface {
	session.Store
	identity.Store
	Ping(ctx context.Context) error
	SigningKeyPEM(ctx context.Context, generate func() (id string, pem []byte, err error)) ([]byte, error)
	TryExclusive(ctx context.Context, name string) (release func(), ok bool, err error)
	CountLiveSessions(ctx context.Context, now time.Time) (int64, error)
}

// Store is what the suite runs on: a Backend, and a way to see what its
// methods do not show.
type Store interface {
	Backend
	// CountRows counts the rows of one of the store's tables: "devices",
	// "users", "signing_keys" or "login_failures". Each store's test
	// provides it with a query of its own.
	CountRows(ctx context.Context, table string) (int64, error)
}
