// Package storetest is the one behavioural test suite of the proxy's
// stores. The PostgreSQL store and the embedded SQLite store both run it
// (from their own tests, each on a fresh database), so that neither drifts
// from the other: what a caller can observe — results, errors, times to the
// microsecond, concurrency — is specified here once.
package storetest

import (
	"context"

	"github.com/authsidecar/authsidecar/proxy/internal/store"
)

// Store is what the suite runs on: a store.Store, and a way to see what its
// methods do not show.
type Store interface {
	store.Store
	// CountRows counts the rows of one of the store's tables: "devices",
	// "users", "signing_keys" or "login_failures". Each store's test
	// provides it with a query of its own.
	CountRows(ctx context.Context, table string) (int64, error)
}
