package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
	"github.com/authsidecar/authsidecar/proxy/internal/store"
	"github.com/authsidecar/authsidecar/proxy/internal/storetest"
)

var _ store.Store = (*postgres.Store)(nil)

// suiteStore gives the shared suite a way to count rows.
type suiteStore struct {
	*postgres.Store
	pool *pgxpool.Pool
}

func (s suiteStore) CountRows(ctx context.Context, table string) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&n)
	return n, err
}

// The behaviour shared with the embedded SQLite store: see package
// storetest. Each subtest gets a fresh, migrated schema.
func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Store {
		s, pool := newStoreConns(t, 26)
		return suiteStore{s, pool}
	})
}
