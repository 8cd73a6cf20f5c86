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
	neturl "net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/schema"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationsTable is the proxy's own version table, so that the proxy and a
// backend can share one database and schema without sharing migrations.
const migrationsTable = "authsidecar_proxy_migrations"

// defaultConnectTimeout bounds each new connection when the URL sets no
// connect_timeout: a database that does not answer fails a request, a start
// or a command within seconds, not after the system's TCP timeout.
const defaultConnectTimeout = 5 * time.Second

// Option tunes Open.
type Option func(*options)

type options struct {
	statementTimeout time.Duration
}

// WithStatementTimeout bounds every statement the pool runs by d (see
// deadlineTracer); 0 leaves them unbounded.
func WithStatementTimeout(d time.Duration) Option {
	return func(o *options) { o.statementTimeout = d }
}

// Open connects a pool and checks that the database answers. tracer, if
// not nil, sees every query (for metrics).
//
// url may name PostgreSQL itself or a pooler in transaction mode in front
// of it (PgBouncer): Open finds out which (see reachesServer) and, unless
// the URL chooses a default_query_exec_mode itself, keeps pgx's named
// prepared statements on a direct connection and uses PooledExecMode
// through a pooler.
//
// With a statement timeout, every statement carries a deadline of that
// length; reaching PostgreSQL itself, its connections also start with the
// server's statement_timeout set to it (a pooler would refuse that startup
// parameter, and a SET would not stick to a pooled connection), so that the
// server stops working on a statement its client gave up on.
func Open(ctx context.Context, url string, tracer pgx.QueryTracer, opts ...Option) (*pgxpool.Pool, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	direct, err := reachesServer(ctx, cfg.ConnConfig)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	if !direct && !setsParam(url, "default_query_exec_mode") {
		cfg.ConnConfig.DefaultQueryExecMode = PooledExecMode
	}
	if o.statementTimeout > 0 {
		if _, set := cfg.ConnConfig.RuntimeParams["statement_timeout"]; direct && !set {
			cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(o.statementTimeout.Milliseconds(), 10)
		}
		tracer = &deadlineTracer{limit: o.statementTimeout, next: tracer}
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

// PooledExecMode is how queries are sent through a pooler. pgx's default
// (QueryExecModeCacheStatement) prepares each statement once per
// connection under a name and reuses it; behind a pooler in transaction
// mode (PgBouncer before 1.21, or without max_prepared_statements) the
// next transaction may run on another server connection, where that name
// is unknown or already taken ("prepared statement stmtcache_… already
// exists"). CacheDescribe uses only the unnamed statement, which lives no
// longer than its round trip, and still sends each query in one round
// trip; pgx caches parameter and result types per connection instead.
// What it costs: the server parses and plans every execution, where a
// named statement is planned once (BenchmarkExecModes: a session lookup
// took about twice as long, +0.1–0.2 ms on a loaded two-core machine). The
// proxy's hot path is its cache, so that is paid on a cache miss, a login,
// or a change.
const PooledExecMode = pgx.QueryExecModeCacheDescribe

// probeParam is a startup parameter only PostgreSQL itself takes.
const probeParam = "authsidecar.direct"

// reachesServer reports whether cfg connects to PostgreSQL itself rather
// than to a pooler. It connects once with probeParam as a startup
// parameter: PostgreSQL accepts any name with a dot in it as a custom
// setting and applies it to the session, while a pooler refuses a startup
// parameter it does not know (PgBouncer: "unsupported startup parameter")
// or, told to ignore it, drops it. A pooler that passed it through would
// look like PostgreSQL: choose default_query_exec_mode in the URL there.
func reachesServer(ctx context.Context, cfg *pgx.ConnConfig) (bool, error) {
	probe := cfg.Copy()
	probe.Tracer = nil
	if probe.RuntimeParams == nil {
		probe.RuntimeParams = map[string]string{}
	}
	probe.RuntimeParams[probeParam] = "on"
	conn, err := pgx.ConnectConfig(ctx, probe)
	if err != nil {
		// Refused: a pooler, if a connection without the parameter
		// works; else the database is not reachable at all.
		plain, err2 := pgx.ConnectConfig(ctx, cfg.Copy())
		if err2 != nil {
			return false, err2
		}
		_ = plain.Close(ctx)
		return false, nil
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v *string
	if err := conn.QueryRow(ctx, "SELECT current_setting('"+probeParam+"', true)").Scan(&v); err != nil {
		return false, err
	}
	return v != nil && *v == "on", nil
}

// setsParam reports whether a connection string (a URL or key=value
// pairs) sets the parameter name.
func setsParam(connString, name string) bool {
	if u, err := neturl.Parse(connString); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return u.Query().Has(name)
	}
	for _, field := range strings.Fields(connString) {
		if k, _, ok := strings.Cut(field, "="); ok && strings.TrimSpace(k) == name {
			return true
		}
	}
	return false
}

// NewMigrator returns a Migrator for the schema that pool's search_path
// selects. Several processes may migrate at once: an advisory lock, keyed
// by the schema's name, lets one apply while the others wait and then find
// nothing left to do. The lock is held by a transaction (see xactLocker),
// so that it works through a transaction pooler as well as directly.
//
// The migrator has connections of its own, made from the pool's settings
// but without its tracer and its statement_timeout: a migration may take
// longer than any bound the pool puts on a request's statements.
func NewMigrator(ctx context.Context, pool *pgxpool.Pool) (*schema.Migrator, error) {
	var name string
	if err := pool.QueryRow(ctx, "SELECT current_schema()").Scan(&name); err != nil {
		return nil, wrap("current schema", err)
	}
	h := fnv.New64a()
	_, _ = io.WriteString(h, "authsidecar proxy migrations "+name)
	locker := &xactLocker{id: int64(h.Sum64() >> 1), wait: migrationLockWait}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	cc := pool.Config().ConnConfig.Copy()
	cc.Tracer = nil
	delete(cc.RuntimeParams, "statement_timeout")
	db := stdlib.OpenDB(*cc)
	// One connection kept between uses: readiness asks for the version
	// every few seconds.
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(time.Minute)
	m, err := schema.New(db, goose.DialectPostgres, sub, migrationsTable, goose.WithLocker(locker))
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return m, nil
}

// migrationLockWait is how long a starting replica waits for another that
// is migrating before it gives up.
const migrationLockWait = 5 * time.Minute

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
