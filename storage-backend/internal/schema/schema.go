// Package schema runs the stores' migrations with goose and reports on them
// in one vocabulary, so that the PostgreSQL and the SQLite store migrate,
// roll back and answer "is the schema current?" alike. Each store carries its
// own migration files (its SQL dialect) with the same versions and names,
// and builds the goose provider for its database.
package schema

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
)

// VersionTable records which migrations are applied. It is not goose's
// default name, so that the proxy's migrations (also goose) can share a
// database and schema with ours without the two histories mixing.
const VersionTable = "storage_schema_migrations"

// Direction says which way Migrate goes.
type Direction int

const (
	// Up applies every pending migration.
	Up Direction = iota + 1
	// Down rolls back the newest applied migration.
	Down
)

// Migration is one migration and, where known, its state in the database.
type Migration struct {
	Version int64
	Name    string // the file name without version and extension
	Applied bool
	// AppliedAt is when it was applied (only from Status, zero when pending).
	AppliedAt time.Time
}

var (
	// ErrNothingToRollBack is returned by Migrate(Down) when no migration is applied.
	ErrNothingToRollBack = errors.New("no migration is applied; nothing to roll back")
	// ErrSchemaNotCurrent is returned by Check when migrations are pending.
	ErrSchemaNotCurrent = errors.New("database schema is not current: migrations are pending")
)

// Migrate applies the pending migrations (Up) or rolls back the newest one
// (Down) through p, and returns the migrations it ran.
func Migrate(ctx context.Context, p *goose.Provider, dir Direction) ([]Migration, error) {
	switch dir {
	case Up:
		results, err := p.Up(ctx)
		if err != nil {
			return nil, fmt.Errorf("apply migrations: %w", err)
		}
		done := make([]Migration, 0, len(results))
		for _, r := range results {
			done = append(done, fromSource(r.Source, true))
		}
		return done, nil
	case Down:
		r, err := p.Down(ctx)
		if errors.Is(err, goose.ErrNoNextVersion) {
			return nil, ErrNothingToRollBack
		}
		if err != nil {
			return nil, fmt.Errorf("roll back migration: %w", err)
		}
		return []Migration{fromSource(r.Source, false)}, nil
	default:
		return nil, fmt.Errorf("unknown migration direction %d", dir)
	}
}

// Status lists every migration p carries, oldest first, with whether it is
// applied.
func Status(ctx context.Context, p *goose.Provider) ([]Migration, error) {
	list, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	out := make([]Migration, 0, len(list))
	for _, s := range list {
		m := fromSource(s.Source, s.State == goose.StateApplied)
		if m.Applied {
			m.AppliedAt = s.AppliedAt.UTC()
		}
		out = append(out, m)
	}
	return out, nil
}

// Check returns nil when every migration of p is applied, ErrSchemaNotCurrent
// when some are pending, or the error that kept it from finding out. goose
// creates its version table the first time it looks at a database, so the
// caller first makes sure that the table exists (and answers
// ErrSchemaNotCurrent itself if not): a readiness probe must not write.
func Check(ctx context.Context, p *goose.Provider) error {
	pending, err := p.HasPending(ctx)
	if err != nil {
		return fmt.Errorf("check schema: %w", err)
	}
	if pending {
		return ErrSchemaNotCurrent
	}
	return nil
}

func fromSource(s *goose.Source, applied bool) Migration {
	name := strings.TrimSuffix(path.Base(s.Path), path.Ext(s.Path))
	if _, rest, ok := strings.Cut(name, "_"); ok {
		name = rest
	}
	return Migration{Version: s.Version, Name: name, Applied: applied}
}
