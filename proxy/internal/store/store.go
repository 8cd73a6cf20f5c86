// Package store names everything the proxy keeps as one interface: the
// PostgreSQL store and the embedded store both provide it, the program is
// wired against it, and one behavioural suite (package storetest) runs on
// both.
package store

import (
	"context"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/audit"
	"github.com/authsidecar/authsidecar/proxy/internal/devicegrant"
	"github.com/authsidecar/authsidecar/proxy/internal/identity"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
)

// Store is everything the proxy keeps.
type Store interface {
	session.Store
	identity.Store
	audit.Store
	devicegrant.Store
	Ping(ctx context.Context) error
	// SigningKeyPEM returns the signing key kept in the store, made with
	// generate on first use (one key for every replica).
	SigningKeyPEM(ctx context.Context, generate func() (id string, pem []byte, err error)) ([]byte, error)
	// TryExclusive takes a lock shared by every process on the store,
	// without waiting; ok is false when another holds it.
	TryExclusive(ctx context.Context, name string) (release func(), ok bool, err error)
	CountLiveSessions(ctx context.Context, now time.Time) (int64, error)
}
