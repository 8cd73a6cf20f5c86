package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
	"github.com/authsidecar/authsidecar/proxy/internal/storetest"
)

func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1.
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	storetest.CheckUnavailable(t, postgres.NewStore(pool))

	if _, err := postgres.NewMigrator(context.Background(), pool); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("NewMigrator: %v, want ErrUnavailable", err)
	}
}

func TestClosedPoolIsUnavailable(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	pool.Close()
	storetest.CheckUnavailable(t, s)
}
