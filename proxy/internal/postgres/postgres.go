// Package postgres is the proxy's PostgreSQL store: devices, users,
// sessions, login failures and the generated signing key, with the schema's
// migrations embedded in the binary; the listener that hears of every
// session change; and the advisory locks that let one replica at a time
// migrate or clean up. Driver errors are translated here, at the boundary, into the errors
// of package auth.
package postgres

import (
	"context"
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
	"github.com/authsidecar/authsidecar/proxy/internal/schema"
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

// NewMigrator returns a Migrator for the schema that pool's search_path
// selects. Several processes may migrate at once: a session advisory lock,
// keyed by the schema's name, lets one apply while the others wait and then
// find nothing left to do.
func NewMigrator(ctx context.Context, pool *pgxpool.Pool) (*schema.Migrator, error) {
	var name string
	if err := pool.QueryRow(ctx, "SELECT current_schema()").Scan(&name); err != nil {
		return nil, wrap("current schema", err)
	}
	h := fnv.New64a()
	_, _ = io.WriteString(h, "authsidecar proxy migrations "+name)
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64()>>1)), lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	m, err := schema.New(db, goose.DialectPostgres, sub, migrationsTable, goose.WithSessionLocker(locker))
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return m, nil
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
