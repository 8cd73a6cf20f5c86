package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// ReserveLoginAttempt counts a login attempt against an account before its
// password is checked, and returns the attempt's number among the current
// run of failures. Counting first, in one write transaction, is what keeps
// parallel guesses from all being evaluated: attempt numbers past the
// threshold are refused without checking.
//
// While the account is locked nothing is counted: attempt is 0 and
// lockedUntil says until when. A lockout that has ended starts a new run.
//
// SQLite has no data-modifying CTE, so where PostgreSQL uses one statement
// this is an upsert and, only when it counted nothing, a read of the lock,
// both in one IMMEDIATE transaction: no other write comes between them.
func (s *Store) ReserveLoginAttempt(ctx context.Context, deviceID, username string, now time.Time) (attempt int, lockedUntil time.Time, err error) {
	var n, until sql.NullInt64
	err = s.tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `
			INSERT INTO login_failures AS lf (device_id, username, failures, updated_at)
			VALUES (?1, ?2, 1, ?3)
			ON CONFLICT (device_id, username) DO UPDATE SET
				failures = CASE WHEN lf.locked_until IS NOT NULL THEN 1 ELSE lf.failures + 1 END,
				locked_until = NULL,
				updated_at = ?3
			WHERE lf.locked_until IS NULL OR lf.locked_until <= ?3
			RETURNING failures`,
			deviceID, username, micros(now)).Scan(&n)
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		// Locked: nothing was counted; report until when.
		return tx.QueryRowContext(ctx, `SELECT locked_until FROM login_failures WHERE device_id = ?1 AND username = ?2`,
			deviceID, username).Scan(&until)
	})
	if err != nil {
		return 0, time.Time{}, wrap("count login attempt", err)
	}
	if !n.Valid {
		return 0, nullTime(until), nil
	}
	return int(n.Int64), time.Time{}, nil
}

// ReleaseLoginAttempt takes back a reserved attempt that was never
// evaluated (the hasher was busy), so that load alone does not lock anyone.
func (s *Store) ReleaseLoginAttempt(ctx context.Context, deviceID, username string) error {
	_, err := s.write.ExecContext(ctx, `
		UPDATE login_failures SET failures = max(failures - 1, 0)
		WHERE device_id = ?1 AND username = ?2 AND locked_until IS NULL`, deviceID, username)
	return wrap("release login attempt", err)
}

// LockAccount locks an account from now for base doubled by each earlier
// lockout, at most maxLock, and returns until when. An account already
// locked keeps its lock. An account with no failures counted (its row
// gone) is auth.ErrNotFound.
func (s *Store) LockAccount(ctx context.Context, deviceID, username string, now time.Time, base, maxLock time.Duration) (time.Time, error) {
	var until time.Time
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var lockouts int64
		var locked sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT lockouts, locked_until FROM login_failures WHERE device_id = ?1 AND username = ?2`,
			deviceID, username).Scan(&lockouts, &locked)
		if err != nil {
			return err
		}
		if locked.Valid && locked.Int64 > micros(now) {
			// Someone else locked it first: report their lock.
			until = fromMicros(locked.Int64)
			return nil
		}
		end := micros(now) + lockoutDuration(base, maxLock, lockouts).Microseconds()
		until = fromMicros(end)
		_, err = tx.ExecContext(ctx, `
			UPDATE login_failures SET locked_until = ?3, lockouts = lockouts + 1, updated_at = ?4
			WHERE device_id = ?1 AND username = ?2`,
			deviceID, username, end, micros(now))
		if err != nil {
			return err
		}
		return record(ctx, tx) // only when this call locked it
	})
	return until, wrap("lock account", err)
}

// lockoutDuration is base doubled once for each earlier lockout (at most 30
// times, as in the PostgreSQL store), capped at maxLock.
func lockoutDuration(base, maxLock time.Duration, lockouts int64) time.Duration {
	d := base
	for i := int64(0); i < min(lockouts, 30) && d < maxLock; i++ {
		if d > maxLock/2 {
			return maxLock // and doubling cannot overflow
		}
		d *= 2
	}
	return min(d, maxLock)
}

// ResetLoginFailures forgets an account's failures and lockouts (after a
// successful login, or an operator's unlock).
func (s *Store) ResetLoginFailures(ctx context.Context, deviceID, username string) (bool, error) {
	var had bool
	err := s.change(ctx, func(q execer) error {
		n, err := affected(q.ExecContext(ctx, `DELETE FROM login_failures WHERE device_id = ?1 AND username = ?2`, deviceID, username))
		had = n > 0
		return err
	})
	return had, wrap("reset login failures", err)
}

// DeleteStaleLoginFailures forgets failure counts not touched since before
// and not locked now, so that guesses at random usernames do not pile up.
func (s *Store) DeleteStaleLoginFailures(ctx context.Context, before, now time.Time, limit int) (int64, error) {
	res, err := s.write.ExecContext(ctx, `
		DELETE FROM login_failures WHERE rowid IN (
			SELECT rowid FROM login_failures
			WHERE updated_at < ?1 AND (locked_until IS NULL OR locked_until <= ?2)
			LIMIT ?3)`, micros(before), micros(now), limit)
	n, err := affected(res, err)
	if err != nil {
		return 0, wrap("delete stale login failures", err)
	}
	return n, nil
}
