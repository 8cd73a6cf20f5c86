package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// What lets the store work through a pooler in transaction mode
// (PgBouncer) as well as on a direct connection: a query mode that keeps
// no prepared statement on the server when a pooler is in the way, and a
// migration lock that lives in a transaction.

// PooledExecMode is how queries are sent through a pooler. pgx's default
// prepares each statement under a name, once per connection; behind a
// pooler in transaction mode the next transaction may run on another
// server connection, where that name is unknown or already taken
// ("prepared statement stmtcache_… already exists"). CacheDescribe uses
// only the unnamed statement and still sends each query in one round
// trip; what it costs is that the server parses and plans every
// execution, which a named statement does once.
const PooledExecMode = pgx.QueryExecModeCacheDescribe

// ChooseExecMode makes cfg's connections use pgx's default query mode
// (named prepared statements, the fastest) when url reaches PostgreSQL
// itself, and PooledExecMode through a pooler; a default_query_exec_mode
// in the URL is kept as it is. It finds out once, before the pool's first
// connection (so that a backend started before its database still starts):
// it connects with a startup parameter only PostgreSQL takes (any name
// with a dot in it is a custom setting to PostgreSQL), which a pooler
// refuses or drops.
func ChooseExecMode(url string, cfg *pgxpool.Config) {
	if SetsParam(url, "default_query_exec_mode") {
		return
	}
	var mu sync.Mutex
	known, direct := false, false
	cfg.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
		mu.Lock()
		defer mu.Unlock()
		if !known {
			d, err := reachesServer(ctx, cc)
			if err != nil {
				return err
			}
			known, direct = true, d
		}
		if !direct {
			cc.DefaultQueryExecMode = PooledExecMode
		}
		return nil
	}
}

// reachesServer reports whether cc connects to PostgreSQL itself.
func reachesServer(ctx context.Context, cc *pgx.ConnConfig) (bool, error) {
	const probe = "authsidecar.direct"
	withProbe := cc.Copy()
	if withProbe.RuntimeParams == nil {
		withProbe.RuntimeParams = map[string]string{}
	}
	withProbe.RuntimeParams[probe] = "on"
	conn, err := pgx.ConnectConfig(ctx, withProbe)
	if err != nil {
		// Refused: a pooler, if a connection without the parameter
		// works; else the database is not reachable at all.
		plain, err2 := pgx.ConnectConfig(ctx, cc.Copy())
		if err2 != nil {
			return false, err2
		}
		_ = plain.Close(ctx)
		return false, nil
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v *string
	if err := conn.QueryRow(ctx, "SELECT current_setting('"+probe+"', true)").Scan(&v); err != nil {
		return false, err
	}
	return v != nil && *v == "on", nil
}

// SetsParam reports whether a connection string (a URL or key=value pairs)
// sets the parameter name, so that a choice made there is kept.
func SetsParam(connString, name string) bool {
	if u, err := url.Parse(connString); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return u.Query().Has(name)
	}
	for _, field := range strings.Fields(connString) {
		if k, _, ok := strings.Cut(field, "="); ok && strings.TrimSpace(k) == name {
			return true
		}
	}
	return false
}

// xactLocker is the migrations' lock (a goose lock.Locker): an advisory
// lock taken with pg_advisory_xact_lock in a transaction of its own, open
// from Lock to Unlock while the migrations run on other connections.
//
// goose's own PostgreSQL locker takes a session-level lock, which belongs
// to the server connection it was taken on; through a pooler in
// transaction mode that connection goes back to the pool after the
// statement, the unlock may reach another one, and the lock stays behind
// where no one can release it. A transaction keeps its server connection
// to the end, and the lock ends with it: at Unlock's commit, or when the
// process dies and its connection closes. Session and transaction locks on
// one key exclude each other, so a replica of an older release still waits
// for this one.
type xactLocker struct {
	id   int64
	wait time.Duration // how long Lock waits for another holder
	tx   *sql.Tx
}

func (l *xactLocker) Lock(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	// lock_timeout bounds the wait; no statement_timeout of the server's
	// or the role's may cut it shorter. Both end with the transaction.
	_, err = tx.ExecContext(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d; SET LOCAL statement_timeout = 0", l.wait.Milliseconds()))
	if err == nil {
		_, err = tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", l.id)
	}
	if err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("migration lock (another process may be migrating): %w", err)
	}
	l.tx = tx
	return nil
}

func (l *xactLocker) Unlock(context.Context, *sql.DB) error {
	tx := l.tx
	l.tx = nil
	if tx == nil {
		return nil
	}
	if err := tx.Commit(); err != nil {
		// The connection broke; the server ends the transaction, and
		// the lock, with it.
		return fmt.Errorf("migration unlock: %w", err)
	}
	return nil
}
