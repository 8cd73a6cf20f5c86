package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// versionTable records which migrations are applied. It is not goose's
// default name, so that the proxy's migrations (also goose) can share a
// database and schema with ours without the two histories mixing.
const versionTable = "storage_schema_migrations"

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
	// ErrSchemaNotCurrent is returned by CheckSchema when migrations are pending.
	ErrSchemaNotCurrent = errors.New("database schema is not current: migrations are pending")
)

// Migrate applies the pending migrations (Up) or rolls back the newest one
// (Down) in the first schema of the pool's search_path, and returns the
// migrations it ran. Several processes may call it at once: a PostgreSQL
// advisory lock lets one migrate while the others wait, and those then find
// nothing left to do.
func Migrate(ctx context.Context, pool *pgxpool.Pool, dir Direction) ([]Migration, error) {
	p, closeDB, err := newProvider(ctx, pool, true)
	if err != nil {
		return nil, err
	}
	defer closeDB()

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

// Status lists every migration this program carries, oldest first, with
// whether it is applied.
func Status(ctx context.Context, pool *pgxpool.Pool) ([]Migration, error) {
	p, closeDB, err := newProvider(ctx, pool, true)
	if err != nil {
		return nil, err
	}
	defer closeDB()

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

// CheckSchema returns nil when every migration is applied, ErrSchemaNotCurrent
// when some are pending, or the error that kept it from finding out. It
// changes nothing in the database, so it is safe to call from a readiness
// probe.
func CheckSchema(ctx context.Context, pool *pgxpool.Pool) error {
	// goose creates its version table when it first looks at a database;
	// looking for the table first keeps a probe from writing.
	var exists bool
	err := pool.QueryRow(ctx,
		`SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = $1)`,
		versionTable,
	).Scan(&exists)
	if err != nil {
		return fmt.Errorf("check schema: %w", err)
	}
	if !exists {
		return ErrSchemaNotCurrent
	}
	// Without the lock: a probe must neither wait for nor block a migration.
	p, closeDB, err := newProvider(ctx, pool, false)
	if err != nil {
		return err
	}
	defer closeDB()
	pending, err := p.HasPending(ctx)
	if err != nil {
		return fmt.Errorf("check schema: %w", err)
	}
	if pending {
		return ErrSchemaNotCurrent
	}
	return nil
}

// newProvider returns a goose provider over pool and a function that
// releases its *sql.DB (the pool itself stays open).
func newProvider(ctx context.Context, pool *pgxpool.Pool, locked bool) (*goose.Provider, func(), error) {
	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, nil, fmt.Errorf("migrations: %w", err)
	}
	opts := []goose.ProviderOption{
		goose.WithTableName(versionTable),
		goose.WithDisableGlobalRegistry(true),
	}
	if locked {
		id, err := lockID(ctx, pool)
		if err != nil {
			return nil, nil, err
		}
		// Try every second for up to five minutes: a replica that starts
		// while another migrates waits for it rather than failing.
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(id), lock.WithLockTimeout(1, 300))
		if err != nil {
			return nil, nil, fmt.Errorf("migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	db := stdlib.OpenDBFromPool(pool)
	p, err := goose.NewProvider(goose.DialectPostgres, db, files, opts...)
	if err != nil {
		_ = db.Close()
		return nil, nil, fmt.Errorf("migrations: %w", err)
	}
	return p, func() { _ = db.Close() }, nil
}

// lockID derives the advisory lock from the schema being migrated. One
// schema's migrations then run one at a time, while migrations of other
// schemas in the same database (other services, parallel tests) neither
// wait for nor block them, as a single fixed lock id would.
func lockID(ctx context.Context, db *pgxpool.Pool) (int64, error) {
	var schema *string
	if err := db.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return 0, fmt.Errorf("migration lock: %w", err)
	}
	if schema == nil {
		return 0, errors.New("migration lock: no schema in search_path exists")
	}
	h := fnv.New64a()
	h.Write([]byte("storage-backend migrations\x00" + *schema))
	return int64(h.Sum64()), nil
}

func fromSource(s *goose.Source, applied bool) Migration {
	name := strings.TrimSuffix(path.Base(s.Path), path.Ext(s.Path))
	if _, rest, ok := strings.Cut(name, "_"); ok {
		name = rest
	}
	return Migration{Version: s.Version, Name: name, Applied: applied}
}

// Ready reports whether the store can serve: the database answers and its
// schema is current. It is meant for a readiness probe.
func Ready(ctx context.Context, pool *pgxpool.Pool) error {
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("database unreachable: %w", err)
	}
	return CheckSchema(ctx, pool)
}
