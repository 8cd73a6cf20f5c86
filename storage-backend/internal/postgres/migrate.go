package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/authsidecar/authsidecar/storage-backend/internal/schema"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// The migration vocabulary is shared with the embedded store (package schema).
type (
	// Direction says which way Migrate goes.
	Direction = schema.Direction
	// Migration is one migration and, where known, its state in the database.
	Migration = schema.Migration
)

const (
	// Up applies every pending migration.
	Up = schema.Up
	// Down rolls back the newest applied migration.
	Down = schema.Down
)

var (
	// ErrNothingToRollBack is returned by Migrate(Down) when no migration is applied.
	ErrNothingToRollBack = schema.ErrNothingToRollBack
	// ErrSchemaNotCurrent is returned by CheckSchema when migrations are pending.
	ErrSchemaNotCurrent = schema.ErrSchemaNotCurrent
)

// Migrate applies the pending migrations (Up) or rolls back the newest one
// (Down) in the first schema of the pool's search_path, and returns the
// migrations it ran. Several processes may call it at once: a PostgreSQL
// advisory lock lets one migrate while the others wait, and those then find
// nothing left to do. The lock is held by a transaction (see xactLocker),
// so that it works through a pooler in transaction mode as well as
// directly.
func Migrate(ctx context.Context, pool *pgxpool.Pool, dir Direction) ([]Migration, error) {
	p, closeDB, err := newProvider(ctx, pool, true)
	if err != nil {
		return nil, err
	}
	defer closeDB()
	return schema.Migrate(ctx, p, dir)
}

// Status lists every migration this program carries, oldest first, with
// whether it is applied.
func Status(ctx context.Context, pool *pgxpool.Pool) ([]Migration, error) {
	p, closeDB, err := newProvider(ctx, pool, true)
	if err != nil {
		return nil, err
	}
	defer closeDB()
	return schema.Status(ctx, p)
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
		schema.VersionTable,
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
	return schema.Check(ctx, p)
}

// newProvider returns a goose provider over pool and a function that
// releases its *sql.DB (the pool itself stays open).
func newProvider(ctx context.Context, pool *pgxpool.Pool, locked bool) (*goose.Provider, func(), error) {
	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, nil, fmt.Errorf("migrations: %w", err)
	}
	opts := []goose.ProviderOption{
		goose.WithTableName(schema.VersionTable),
		goose.WithDisableGlobalRegistry(true),
	}
	if locked {
		id, err := lockID(ctx, pool)
		if err != nil {
			return nil, nil, err
		}
		// A replica that starts while another migrates waits for it (up
		// to five minutes) rather than failing.
		opts = append(opts, goose.WithLocker(&xactLocker{id: id, wait: 5 * time.Minute}))
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
	var name *string
	if err := db.QueryRow(ctx, `SELECT current_schema()`).Scan(&name); err != nil {
		return 0, fmt.Errorf("migration lock: %w", err)
	}
	if name == nil {
		return 0, errors.New("migration lock: no schema in search_path exists")
	}
	h := fnv.New64a()
	h.Write([]byte("storage-backend migrations\x00" + *name))
	return int64(h.Sum64()), nil
}

// Ready reports whether the store can serve: the database answers and its
// schema is current. It is meant for a readiness probe.
func Ready(ctx context.Context, pool *pgxpool.Pool) error {
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("database unreachable: %w", err)
	}
	return CheckSchema(ctx, pool)
}
