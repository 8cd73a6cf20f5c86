// Package schema applies and reports a store's embedded migrations, for
// every store kind (PostgreSQL, the embedded SQLite store) alike.
package schema

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/pressly/goose/v3"
)

// Migrator applies and reports migrations.
type Migrator struct {
	db       *sql.DB
	provider *goose.Provider
}

// New returns a Migrator for the migrations in fsys (its top level), kept
// in table. db is closed by Close.
func New(db *sql.DB, dialect goose.Dialect, fsys fs.FS, table string, opts ...goose.ProviderOption) (*Migrator, error) {
	opts = append([]goose.ProviderOption{goose.WithTableName(table), goose.WithDisableGlobalRegistry(true)}, opts...)
	p, err := goose.NewProvider(dialect, db, fsys, opts...)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return &Migrator{db: db, provider: p}, nil
}

// Close releases the migrator's handle.
func (m *Migrator) Close() error { return m.db.Close() }

// Up applies every pending migration and returns how many it applied.
func (m *Migrator) Up(ctx context.Context) (int, error) {
	res, err := m.provider.Up(ctx)
	if err != nil {
		return len(res), fmt.Errorf("migrate up: %w", err)
	}
	return len(res), nil
}

// Down rolls back the newest applied migration. It reports the version
// rolled back, or 0 when there was none.
func (m *Migrator) Down(ctx context.Context) (int64, error) {
	res, err := m.provider.Down(ctx)
	if errors.Is(err, goose.ErrNoNextVersion) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("migrate down: %w", err)
	}
	return res.Source.Version, nil
}

// State is one migration and whether it is applied.
type State struct {
	Version   int64
	Name      string
	Applied   bool
	AppliedAt time.Time
}

// Status lists every migration, oldest first.
func (m *Migrator) Status(ctx context.Context) ([]State, error) {
	st, err := m.provider.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	out := make([]State, 0, len(st))
	for _, s := range st {
		out = append(out, State{
			Version: s.Source.Version, Name: s.Source.Path,
			Applied: s.State == goose.StateApplied, AppliedAt: s.AppliedAt,
		})
	}
	return out, nil
}

// Current reports whether every known migration is applied. A schema newer
// than this binary (a rolling update's next version migrated first) is
// current too: migrations are written to be backward compatible.
func (m *Migrator) Current(ctx context.Context) (bool, error) {
	current, target, err := m.provider.GetVersions(ctx)
	if err != nil {
		return false, fmt.Errorf("schema version: %w", err)
	}
	return current >= target, nil
}
