package main

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/storage-backend/internal/postgres"
	"github.com/authsidecar/authsidecar/storage-backend/internal/record"
	"github.com/authsidecar/authsidecar/storage-backend/internal/schema"
	"github.com/authsidecar/authsidecar/storage-backend/internal/sqlite"
)

// database is the store the settings chose, with what the commands need of
// it. The commands do not know which one it is.
type database struct {
	store   record.Store
	ready   func(context.Context) error
	migrate func(context.Context, schema.Direction) ([]schema.Migration, error)
	status  func(context.Context) ([]schema.Migration, error)
	close   func()
	// ping checks that the store answers (a pool connects lazily).
	ping func(context.Context) error

	// kind and where say which store this is, for the log and the
	// migrate commands: "PostgreSQL" and host:port/database (no
	// password), or "SQLite" and the file's path.
	kind, where string
}

// embeddedNote is logged with the embedded store, so that whoever reads the
// first lines of a replicated deployment's logs finds the mistake.
const embeddedNote = "for one process only; set DATABASE_URL to use PostgreSQL, the store for several replicas"

// openDatabase opens PostgreSQL when DATABASE_URL is set, else the embedded
// store in DATA_DIR (cfg.dbPath, from prepareDataDir).
func openDatabase(ctx context.Context, cfg config) (*database, error) {
	if cfg.pool != nil {
		postgres.ChooseExecMode(cfg.DatabaseURL, cfg.pool)
		pool, err := pgxpool.NewWithConfig(ctx, cfg.pool)
		if err != nil {
			return nil, fmt.Errorf("database: %w", err)
		}
		c := cfg.pool.ConnConfig
		return &database{
			store: postgres.NewStore(pool),
			ready: func(ctx context.Context) error { return postgres.Ready(ctx, pool) },
			migrate: func(ctx context.Context, dir schema.Direction) ([]schema.Migration, error) {
				return postgres.Migrate(ctx, pool, dir)
			},
			status: func(ctx context.Context) ([]schema.Migration, error) { return postgres.Status(ctx, pool) },
			close:  pool.Close,
			ping: func(ctx context.Context) error {
				if err := pool.Ping(ctx); err != nil {
					return fmt.Errorf("database: %w", err)
				}
				return nil
			},
			kind:  "PostgreSQL",
			where: net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))) + "/" + c.Database,
		}, nil
	}
	db, err := sqlite.Open(ctx, cfg.dbPath)
	if err != nil {
		return nil, err
	}
	return &database{
		store: sqlite.NewStore(db),
		ready: func(ctx context.Context) error { return sqlite.Ready(ctx, db) },
		migrate: func(ctx context.Context, dir schema.Direction) ([]schema.Migration, error) {
			return sqlite.Migrate(ctx, db, dir)
		},
		status: func(ctx context.Context) ([]schema.Migration, error) { return sqlite.Status(ctx, db) },
		close:  func() { _ = db.Close() },
		ping:   db.PingContext,
		kind:   "SQLite",
		where:  cfg.dbPath,
	}, nil
}

// logStore says at start which store serves.
func (d *database) logStore(logger *zap.Logger) {
	if d.kind == "SQLite" {
		logger.Info("store: embedded SQLite", zap.String("path", d.where), zap.String("note", embeddedNote))
		return
	}
	logger.Info("store: PostgreSQL", zap.String("database", d.where))
}
