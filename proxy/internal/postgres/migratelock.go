package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// xactLocker is the migrations' lock (a goose lock.Locker): an advisory
// lock taken with pg_advisory_xact_lock in a transaction of its own, which
// stays open from Lock to Unlock while the migrations run on other
// connections.
//
// goose's own PostgreSQL locker takes a session-level advisory lock, which
// belongs to the server connection it was taken on. Through a pooler in
// transaction mode (PgBouncer) that server connection goes back to the
// pool after the statement, the unlock may run on another one, and the
// lock stays behind on a connection no one owns, stopping every later
// migration. A transaction keeps its server connection to the end, and
// the lock ends with it: at Unlock's commit, or when the process dies and
// its connection closes.
//
// Session-level and transaction-level advisory locks on one key exclude
// each other, so a replica of an older release, which takes the session
// lock on the same key, still waits for this one and the other way round.
type xactLocker struct {
	id   int64
	wait time.Duration // how long Lock waits for another holder
	tx   *sql.Tx
}

func (l *xactLocker) Lock(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration lock: %w", wrap("begin", err))
	}
	// lock_timeout bounds the wait for a replica that is migrating; no
	// statement_timeout of the server's or the role's may cut it shorter.
	// Both end with the transaction.
	_, err = tx.ExecContext(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d; SET LOCAL statement_timeout = 0", l.wait.Milliseconds()))
	if err == nil {
		_, err = tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", l.id)
	}
	if err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("migration lock (another process may be migrating): %w", wrap("advisory lock", err))
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
	// A commit fails when the connection broke, and the server then ends
	// the transaction and the lock with it.
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration unlock: %w", err)
	}
	return nil
}
