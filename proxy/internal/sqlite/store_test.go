package sqlite

import (
	"context"
	"testing"

	"github.com/authsidecar/authsidecar/proxy/internal/store"
	"github.com/authsidecar/authsidecar/proxy/internal/storetest"
)

var _ store.Store = (*Store)(nil)

// suiteStore gives the shared suite a way to count rows.
type suiteStore struct{ *Store }

func (s suiteStore) CountRows(ctx context.Context, table string) (int64, error) {
	var n int64
	err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM "`+table+`"`).Scan(&n)
	return n, err
}

// The behaviour shared with the PostgreSQL store: see package storetest.
func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Store { return suiteStore{newStore(t)} })
}

// newStore returns a migrated Store in a directory of its own, closed when
// the test ends.
func newStore(t *testing.T) *Store {
	t.Helper()
	s := openStore(t, t.TempDir())
	migrate(t, s)
	return s
}

// openStore opens the store in dir, closed when the test ends.
func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// migrate applies every migration.
func migrate(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	m, err := NewMigrator(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
}
