package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// ReserveLoginAttempt counts a login attempt against an account before its
// password is checked, and returns the attempt's number among the current
// run of failures. Counting first, in one atomic statement, is what keeps
// parallel guesses (on any number of replicas) from all being evaluated:
// attempt numbers past the threshold are refused without checking.
//
// While the account is locked nothing is counted: attempt is 0 and
// lockedUntil says until when. A lockout that has ended starts a new run.
func (s *Store) ReserveLoginAttempt(ctx context.Context, deviceID, username string, now time.Time) (attempt int, lockedUntil time.Time, err error) {
	var n pgtype.Int4
	var until pgtype.Timestamptz
	err = s.pool.QueryRow(ctx, `
		WITH up AS (
			INSERT INTO login_failures AS lf (device_id, username, failures, updated_at)
			VALUES ($1, $2, 1, $3)
			ON CONFLICT (device_id, username) DO UPDATE SET
				failures = CASE WHEN lf.locked_until IS NOT NULL THEN 1 ELSE lf.failures + 1 END,
				locked_until = NULL,
				updated_at = $3
			WHERE lf.locked_until IS NULL OR lf.locked_until <= $3
			RETURNING failures
		)
		SELECT (SELECT failures FROM up),
		       (SELECT locked_until FROM login_failures WHERE device_id = $1 AND username = $2)`,
		deviceID, username, now).Scan(&n, &until)
	if err != nil {
		return 0, time.Time{}, wrap("count login attempt", err)
	}
	if !n.Valid && !until.Valid {
		// Locked by another replica after this statement's snapshot was
		// taken: read the lock that refused the attempt.
		err = s.pool.QueryRow(ctx, `SELECT locked_until FROM login_failures WHERE device_id = $1 AND username = $2`,
			deviceID, username).Scan(&until)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return 0, time.Time{}, wrap("read lock", err)
		}
	}
	if !n.Valid {
		return 0, until.Time, nil
	}
	return int(n.Int32), time.Time{}, nil
}

// ReleaseLoginAttempt takes back a reserved attempt that was never
// evaluated (the hasher was busy, the store failed, the caller went away),
// so that load or faults alone do not lock anyone.
func (s *Store) ReleaseLoginAttempt(ctx context.Context, deviceID, username string) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE login_failures SET failures = greatest(failures - 1, 0)
		WHERE device_id = $1 AND username = $2 AND locked_until IS NULL`, deviceID, username)
	return wrap("release login attempt", err)
}

// LockAccount locks an account from now for base doubled by each earlier
// lockout, at most maxLock, and returns until when. An account already
// locked keeps its lock.
func (s *Store) LockAccount(ctx context.Context, deviceID, username string, now time.Time, base, maxLock time.Duration) (time.Time, error) {
	var until time.Time
	err := s.change(ctx, func(q Querier) error {
		return q.QueryRow(ctx, `
		UPDATE login_failures SET
			locked_until = $3 + least($4::float8 * power(2, least(lockouts, 30)), $5::float8) * interval '1 second',
			lockouts = lockouts + 1,
			updated_at = $3
		WHERE device_id = $1 AND username = $2 AND (locked_until IS NULL OR locked_until <= $3)
		RETURNING locked_until`,
			deviceID, username, now, base.Seconds(), maxLock.Seconds()).Scan(&until)
	})
	if !errors.Is(err, pgx.ErrNoRows) {
		return until, wrap("lock account", err)
	}
	// Someone else locked it first: report their lock.
	var theirs pgtype.Timestamptz
	err = s.pool.QueryRow(ctx, `SELECT locked_until FROM login_failures WHERE device_id = $1 AND username = $2`,
		deviceID, username).Scan(&theirs)
	return theirs.Time, wrap("lock account", err)
}

// ResetLoginFailures forgets an account's failures and lockouts (after a
// successful login, or an operator's unlock).
func (s *Store) ResetLoginFailures(ctx context.Context, deviceID, username string) (bool, error) {
	var had bool
	err := s.change(ctx, func(q Querier) error {
		tag, err := q.Exec(ctx, `DELETE FROM login_failures WHERE device_id = $1 AND username = $2`, deviceID, username)
		had = err == nil && tag.RowsAffected() > 0
		return err
	})
	return had, wrap("reset login failures", err)
}

// DeleteStaleLoginFailures forgets failure counts not touched since before
// and not locked now, so that guesses at random usernames do not pile up.
func (s *Store) DeleteStaleLoginFailures(ctx context.Context, before, now time.Time, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		DELETE FROM login_failures WHERE ctid IN (
			SELECT ctid FROM login_failures
			WHERE updated_at < $1 AND (locked_until IS NULL OR locked_until <= $2)
			LIMIT $3)`, before, now, limit)
	if err != nil {
		return 0, wrap("delete stale login failures", err)
	}
	return tag.RowsAffected(), nil
}
