package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sync"

	"github.com/pressly/goose/v3"

	"github.com/authsidecar/authsidecar/storage-backend/internal/schema"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrating lets one Migrate or Status of this process work at a time: goose
// creates its version table when it first looks, and two callers at once
// would both try. (SQLite has no advisory lock; the store is for one process.)
var migrating sync.Mutex

// Migrate applies the pending migrations (Up) or rolls back the newest one
// (Down), and returns the migrations it ran. Each migration runs in a
// transaction of its own.
func Migrate(ctx context.Context, db *sql.DB, dir schema.Direction) ([]schema.Migration, error) {
	migrating.Lock()
	defer migrating.Unlock()
	p, err := newProvider(db)
	if err != nil {
		return nil, err
	}
	return schema.Migrate(ctx, p, dir)
}

// Status lists every migration this program carries, oldest first, with
// whether it is applied.
func Status(ctx context.Context, db *sql.DB) ([]schema.Migration, error) {
	migrating.Lock()
	defer migrating.Unlock()
	p, err := newProvider(db)
	if err != nil {
		return nil, err
	}
	return schema.Status(ctx, p)
}

// CheckSchema returns nil when every migration is applied,
// schema.ErrSchemaNotCurrent when some are pending, or the error that kept it
// from finding out. It changes nothing in the database, so it is safe to
// call from a readiness probe.
func CheckSchema(ctx context.Context, db *sql.DB) error {
	// goose creates its version table when it first looks at a database;
	// looking for the table first keeps a probe from writing.
	var n int
	err := db.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1`, schema.VersionTable,
	).Scan(&n)
	if err != nil {
		return fmt.Errorf("check schema: %w", err)
	}
	if n == 0 {
		return schema.ErrSchemaNotCurrent
	}
	p, err := newProvider(db)
	if err != nil {
		return err
	}
	return schema.Check(ctx, p)
}

// Ready reports whether the store can serve: the database answers and its
// schema is current. It is meant for a readiness probe.
func Ready(ctx context.Context, db *sql.DB) error {
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("database unavailable: %w", err)
	}
	return CheckSchema(ctx, db)
}

func newProvider(db *sql.DB) (*goose.Provider, error) {
	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, files,
		goose.WithTableName(schema.VersionTable),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}
