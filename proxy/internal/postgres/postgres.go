// Package postgres is the proxy's PostgreSQL store: devices, users, sessions
// and the generated signing key, with the schema's migrations embedded in the
// binary. Driver errors are translated here, at the boundary, into the errors
// of package auth.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationsTable is the proxy's own version table, so that the proxy and a
// backend can share one database and schema without sharing migrations.
const migrationsTable = "authsidecar_proxy_migrations"

// Open connects a pool and checks that the database answers. tracer, if
// not nil, sees every query (for metrics).
func Open(ctx context.Context, url string, tracer pgx.QueryTracer) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return pool, nil
}

// Migrator applies and reports the embedded migrations.
type Migrator struct {
	db       *sql.DB
	provider *goose.Provider
}

// NewMigrator returns a Migrator for the schema that pool's search_path
// selects. Several processes may migrate at once: a session advisory lock,
// keyed by the schema's name, lets one apply while the others wait and then
// find nothing left to do.
func NewMigrator(ctx context.Context, pool *pgxpool.Pool) (*Migrator, error) {
	var schema string
	if err := pool.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return nil, wrap("current schema", err)
	}
	h := fnv.New64a()
	_, _ = io.WriteString(h, "authsidecar proxy migrations "+schema)
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64()>>1)), lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithTableName(migrationsTable), goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return &Migrator{db: db, provider: p}, nil
}

// Close releases the migrator's handle (not the pool).
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

// MigrationState is one migration and whether it is applied.
type MigrationState struct {
	Version   int64
	Name      string
	Applied   bool
	AppliedAt time.Time
}

// Status lists every migration, oldest first.
func (m *Migrator) Status(ctx context.Context) ([]MigrationState, error) {
	st, err := m.provider.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	out := make([]MigrationState, 0, len(st))
	for _, s := range st {
		out = append(out, MigrationState{
			Version: s.Source.Version, Name: s.Source.Path,
			Applied: s.State == goose.StateApplied, AppliedAt: s.AppliedAt,
		})
	}
	return out, nil
}

// Current reports whether every embedded migration is applied.
func (m *Migrator) Current(ctx context.Context) (bool, error) {
	current, target, err := m.provider.GetVersions(ctx)
	if err != nil {
		return false, fmt.Errorf("schema version: %w", err)
	}
	return current >= target, nil
}

// Querier is what store code needs: satisfied by *pgxpool.Pool and pgx.Tx.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// wrap translates driver errors into the errors of package auth: no rows is
// ErrNotFound, a unique violation is ErrConflict, and anything else (a lost
// connection, a timeout) is ErrUnavailable, so that callers fail closed.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, auth.ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505":
			return fmt.Errorf("%s: %w", op, auth.ErrConflict)
		case "22P02", "23503", "23514":
			// Invalid text representation (a malformed uuid), a missing
			// referenced row, a failed check: the input, not the store.
			return fmt.Errorf("%s: %w: %w", op, auth.ErrNotFound, err)
		}
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %w", op, auth.ErrUnavailable, err)
}
