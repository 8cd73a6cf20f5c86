package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

const sessionColumns = `s.id, s.device_id, coalesce(s.user_id::text, ''), coalesce(u.username, ''), s.is_admin,
	s.generation, s.prev_valid_until, s.created_at, s.refreshed_at, s.expires_at, s.revoked_at,
	s.client_addr, s.user_agent, coalesce(s.last_seen_at, s.created_at)`

func scanSession(row pgx.Row) (auth.Session, error) {
	var s auth.Session
	var prev, refreshed, revoked pgtype.Timestamptz
	err := row.Scan(&s.ID, &s.DeviceID, &s.UserID, &s.Username, &s.IsAdmin,
		&s.Generation, &prev, &s.CreatedAt, &refreshed, &s.ExpiresAt, &revoked,
		&s.ClientAddr, &s.UserAgent, &s.LastSeenAt)
	s.PrevValidUntil, s.RefreshedAt, s.RevokedAt = prev.Time, refreshed.Time, revoked.Time
	return s, err
}

// CreateSession stores a new session.
func (s *Store) CreateSession(ctx context.Context, sess auth.Session) error {
	return wrap("create session", s.change(ctx, func(q Querier) error { return insertSession(ctx, q, sess) }))
}

// CreateSessionUpgradingHash creates sess and, in the same transaction,
// replaces its user's password hash old with new, unless it changed
// meanwhile (the login then fails its confirmation).
func (s *Store) CreateSessionUpgradingHash(ctx context.Context, sess auth.Session, old, new string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := insertSession(ctx, tx, sess); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE users SET password_hash = $3, updated_at = $4 WHERE id = $1::uuid AND password_hash = $2`,
			sess.UserID, old, new, sess.CreatedAt); err != nil {
			return err
		}
		return record(ctx, tx)
	})
	return wrap("create session", err)
}

func insertSession(ctx context.Context, db Querier, sess auth.Session) error {
	var userID *string
	if sess.UserID != "" {
		userID = &sess.UserID
	}
	_, err := db.Exec(ctx, `
		INSERT INTO sessions (id, device_id, user_id, is_admin, generation, created_at, expires_at, client_addr, user_agent)
		VALUES ($1, $2, $3::uuid, $4, $5, $6, $7, $8, $9)`,
		sess.ID, sess.DeviceID, userID, sess.IsAdmin, sess.Generation, sess.CreatedAt, sess.ExpiresAt,
		sess.ClientAddr, sess.UserAgent)
	return err
}

// Session returns one session, revoked or expired ones included: the caller
// decides, with its own clock.
func (s *Store) Session(ctx context.Context, id string) (auth.Session, error) {
	sess, err := scanSession(s.pool.QueryRow(ctx, `
		SELECT `+sessionColumns+` FROM sessions s LEFT JOIN users u ON u.id = s.user_id
		WHERE s.id = $1`, id))
	return sess, wrap("find session", err)
}

// DeleteExpiredSession removes a session row if it has expired by now (a
// refresh may have extended it since the caller looked), and reports
// whether it did.
func (s *Store) DeleteExpiredSession(ctx context.Context, id string, now time.Time) (bool, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE id = $1 AND expires_at <= $2`, id, now)
	if err != nil {
		return false, wrap("delete expired session", err)
	}
	return tag.RowsAffected() > 0, nil
}

// RefreshSession moves a live session from generation gen to gen+1 with a
// new expiry; the old generation stays valid until prevValidUntil. Only one
// of several concurrent refreshes of the same generation succeeds; the
// others get auth.ErrInvalidToken, so one token never forks into two chains.
func (s *Store) RefreshSession(ctx context.Context, id string, gen int64, now, expiresAt, prevValidUntil time.Time) (auth.Session, error) {
	var sess auth.Session
	err := s.change(ctx, func(q Querier) error {
		var err error
		sess, err = scanSession(q.QueryRow(ctx, `
		WITH r AS (
			UPDATE sessions SET generation = generation + 1, prev_valid_until = $4,
				expires_at = $5, refreshed_at = $3
			WHERE id = $1 AND generation = $2 AND revoked_at IS NULL AND expires_at > $3
			RETURNING *
		)
		SELECT `+sessionColumns+` FROM r s LEFT JOIN users u ON u.id = s.user_id`,
			id, gen, now, prevValidUntil, expiresAt))
		return err
	})
	if err == pgx.ErrNoRows {
		return auth.Session{}, auth.ErrInvalidToken
	}
	return sess, wrap("refresh session", err)
}

// RevokeSession revokes one session at now. With deviceID set, it only
// revokes a session of that device (auth.ErrNotFound otherwise).
func (s *Store) RevokeSession(ctx context.Context, id, deviceID string, now time.Time) error {
	// One statement, with its event when ctx carries one: a logout is
	// what another replica waits for, and a transaction of its own would
	// cost three round trips more (BEGIN, the event's INSERT, COMMIT)
	// before the notification leaves. The INSERT reads the UPDATE's
	// RETURNING, so the event is written exactly when a session was revoked.
	const revoke = `UPDATE sessions SET revoked_at = $2
		WHERE id = $1 AND ($3 = '' OR device_id = $3) AND revoked_at IS NULL AND expires_at > $2`
	var (
		tag pgconn.CommandTag
		err error
	)
	if ev, ok := auth.RecordedEvent(ctx); ok {
		tag, err = s.pool.Exec(ctx, `WITH revoked AS (`+revoke+` RETURNING 1)
			INSERT INTO auth_events (time, type, device_id, username, session_id, actor, reason, client_addr)
			SELECT $4::timestamptz, $5::text, $6::text, $7::text, $8::text, $9::text, $10::text, $11::text FROM revoked`,
			id, now, deviceID, ev.Time, string(ev.Type), ev.DeviceID, ev.Username, ev.SessionID, ev.By, ev.Reason, ev.ClientAddr)
	} else {
		tag, err = s.pool.Exec(ctx, revoke, id, now, deviceID)
	}
	if err != nil {
		return wrap("revoke session", err)
	}
	if tag.RowsAffected() == 0 {
		return auth.ErrNotFound // and no event: nothing changed
	}
	return nil
}

// RevokeDevice revokes the live sessions of a device, or of one user of it
// when username is not empty, and returns how many.
func (s *Store) RevokeDevice(ctx context.Context, deviceID, username string, now time.Time) (int64, error) {
	var n int64
	err := s.change(ctx, func(q Querier) error {
		var err error
		n, err = revokeWhere(ctx, q, `device_id = $2 AND ($3 = '' OR user_id = (
			SELECT id FROM users WHERE device_id = $2 AND username = $3))`, now, deviceID, username)
		return err
	})
	return n, wrap("revoke device sessions", err)
}

func revokeWhere(ctx context.Context, q Querier, cond string, now time.Time, args ...any) (int64, error) {
	tag, err := q.Exec(ctx, `UPDATE sessions SET revoked_at = $1
		WHERE revoked_at IS NULL AND expires_at > $1 AND `+cond, append([]any{now}, args...)...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// ListSessions lists the live sessions at now, of one device when deviceID is
// not empty, oldest first.
func (s *Store) ListSessions(ctx context.Context, deviceID string, now time.Time) ([]auth.Session, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT `+sessionColumns+` FROM sessions s LEFT JOIN users u ON u.id = s.user_id
		WHERE ($1 = '' OR s.device_id = $1) AND s.revoked_at IS NULL AND s.expires_at > $2
		ORDER BY s.created_at, s.id`, deviceID, now)
	if err != nil {
		return nil, wrap("list sessions", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (auth.Session, error) { return scanSession(row) })
	return list, wrap("list sessions", err)
}

// DeleteExpired deletes up to limit sessions that expired before now and
// returns how many. Callers loop until it returns fewer than limit: small
// batches keep each transaction short, so cleaning a million rows never
// holds locks that stall logins.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		DELETE FROM sessions WHERE id IN (
			SELECT id FROM sessions WHERE expires_at <= $1
			ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)`, now, limit)
	if err != nil {
		return 0, wrap("delete expired sessions", err)
	}
	return tag.RowsAffected(), nil
}

// CountLiveSessions counts sessions neither revoked nor expired at now.
func (s *Store) CountLiveSessions(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > $1`, now).Scan(&n)
	return n, wrap("count live sessions", err)
}
