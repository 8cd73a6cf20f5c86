package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authsidecar/authsidecar/storage-backend/internal/postgres"
	"github.com/authsidecar/authsidecar/storage-backend/internal/record"
)

// A database that cannot be reached is ErrUnavailable (503, retry), not an
// internal error (500): a restarting database is not a bug.
func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1.
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := postgres.NewStore(pool)
	ctx := context.Background()
	_, _, err = s.Put(ctx, record.Record{DeviceID: "d", Key: "k", Data: json.RawMessage(`1`)})
	if !errors.Is(err, record.ErrUnavailable) {
		t.Errorf("Put: %v, want ErrUnavailable", err)
	}
	if _, err := s.Get(ctx, "d", "k"); !errors.Is(err, record.ErrUnavailable) {
		t.Errorf("Get: %v, want ErrUnavailable", err)
	}
	if _, err := s.List(ctx, "d", "", 10); !errors.Is(err, record.ErrUnavailable) {
		t.Errorf("List: %v, want ErrUnavailable", err)
	}
	if err := s.Delete(ctx, "d", "k"); !errors.Is(err, record.ErrUnavailable) {
		t.Errorf("Delete: %v, want ErrUnavailable", err)
	}
}
