package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

const sessionColumns = `s.id, s.device_id, coalesce(s.user_id, ''), coalesce(u.username, ''), s.is_admin,
	s.generation, s.prev_valid_until, s.created_at, s.refreshed_at, s.expires_at, s.revoked_at,
	s.client_addr, s.user_agent, coalesce(s.last_seen_at, s.created_at)`

func scanSession(row rowScanner) (auth.Session, error) {
	var s auth.Session
	var created, expires, seen int64
	var prev, refreshed, revoked sql.NullInt64
	err := row.Scan(&s.ID, &s.DeviceID, &s.UserID, &s.Username, &s.IsAdmin,
		&s.Generation, &prev, &created, &refreshed, &expires, &revoked,
		&s.ClientAddr, &s.UserAgent, &seen)
	s.CreatedAt, s.ExpiresAt, s.LastSeenAt = fromMicros(created), fromMicros(expires), fromMicros(seen)
	s.PrevValidUntil, s.RefreshedAt, s.RevokedAt = nullTime(prev), nullTime(refreshed), nullTime(revoked)
	return s, err
}

// CreateSession stores a new session.
func (s *Store) CreateSession(ctx context.Context, sess auth.Session) error {
	return wrap("create session", s.change(ctx, func(q execer) error { return insertSession(ctx, q, sess) }))
}

// CreateSessionUpgradingHash creates sess and, in the same transaction,
// replaces its user's password hash old with new, unless it changed
// meanwhile (the login then fails its confirmation).
func (s *Store) CreateSessionUpgradingHash(ctx context.Context, sess auth.Session, old, new string) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := insertSession(ctx, tx, sess); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = ?3, updated_at = ?4 WHERE id = ?1 AND password_hash = ?2`,
			sess.UserID, old, new, micros(sess.CreatedAt)); err != nil {
			return err
		}
		return record(ctx, tx)
	})
	return wrap("create session", err)
}

func insertSession(ctx context.Context, db execer, sess auth.Session) error {
	var userID *string
	if sess.UserID != "" {
		userID = &sess.UserID
	}
	_, err := db.ExecContext(ctx, `
		INSERT INTO sessions (id, device_id, user_id, is_admin, generation, created_at, expires_at, client_addr, user_agent)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)`,
		sess.ID, sess.DeviceID, userID, sess.IsAdmin, sess.Generation, micros(sess.CreatedAt), micros(sess.ExpiresAt),
		sess.ClientAddr, sess.UserAgent)
	return err
}

// Session returns one session, revoked or expired ones included: the caller
// decides, with its own clock.
func (s *Store) Session(ctx context.Context, id string) (auth.Session, error) {
	sess, err := scanSession(s.read.QueryRowContext(ctx, `
		SELECT `+sessionColumns+` FROM sessions s LEFT JOIN users u ON u.id = s.user_id
		WHERE s.id = ?1`, id))
	return sess, wrap("find session", err)
}

// DeleteExpiredSession removes a session row if it has expired by now (a
// refresh may have extended it since the caller looked), and reports
// whether it did.
func (s *Store) DeleteExpiredSession(ctx context.Context, id string, now time.Time) (bool, error) {
	res, err := s.write.ExecContext(ctx, `DELETE FROM sessions WHERE id = ?1 AND expires_at <= ?2`, id, micros(now))
	n, err := affected(res, err)
	if err != nil {
		return false, wrap("delete expired session", err)
	}
	return n > 0, nil
}

// RefreshSession moves a live session from generation gen to gen+1 with a
// new expiry; the old generation stays valid until prevValidUntil. Only one
// of several concurrent refreshes of the same generation succeeds (the
// UPDATE is conditional on the generation, and write transactions run one
// at a time); the others get auth.ErrInvalidToken, so one token never forks
// into two chains.
func (s *Store) RefreshSession(ctx context.Context, id string, gen int64, now, expiresAt, prevValidUntil time.Time) (auth.Session, error) {
	var sess auth.Session
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `
			UPDATE sessions SET generation = generation + 1, prev_valid_until = ?4,
				expires_at = ?5, refreshed_at = ?3
			WHERE id = ?1 AND generation = ?2 AND revoked_at IS NULL AND expires_at > ?3`,
			id, gen, micros(now), micros(prevValidUntil), micros(expiresAt))
		n, err := affected(res, err)
		if err != nil {
			return err
		}
		if n == 0 {
			return auth.ErrInvalidToken
		}
		sess, err = scanSession(tx.QueryRowContext(ctx, `
			SELECT `+sessionColumns+` FROM sessions s LEFT JOIN users u ON u.id = s.user_id
			WHERE s.id = ?1`, id))
		if err != nil {
			return err
		}
		return record(ctx, tx)
	})
	if err == auth.ErrInvalidToken {
		return auth.Session{}, err
	}
	return sess, wrap("refresh session", err)
}

// RevokeSession revokes one session at now. With deviceID set, it only
// revokes a session of that device (auth.ErrNotFound otherwise).
func (s *Store) RevokeSession(ctx context.Context, id, deviceID string, now time.Time) error {
	err := s.change(ctx, func(q execer) error {
		n, err := affected(q.ExecContext(ctx, `
			UPDATE sessions SET revoked_at = ?2
			WHERE id = ?1 AND (?3 = '' OR device_id = ?3) AND revoked_at IS NULL AND expires_at > ?2`,
			id, micros(now), deviceID))
		if err == nil && n == 0 {
			return auth.ErrNotFound // and no event: nothing changed
		}
		return err
	})
	if errors.Is(err, auth.ErrNotFound) {
		return err
	}
	return wrap("revoke session", err)
}

// RevokeDevice revokes the live sessions of a device, or of one user of it
// when username is not empty, and returns how many.
func (s *Store) RevokeDevice(ctx context.Context, deviceID, username string, now time.Time) (int64, error) {
	var n int64
	err := s.change(ctx, func(q execer) error {
		var err error
		n, err = revokeWhere(ctx, q, `device_id = ?2 AND (?3 = '' OR user_id = (
			SELECT id FROM users WHERE device_id = ?2 AND username = ?3))`, now, deviceID, username)
		return err
	})
	return n, wrap("revoke device sessions", err)
}

// execer is a *sql.DB or *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// revokeWhere revokes the live sessions that cond selects; in cond, ?1 is
// now and ?2… are args.
func revokeWhere(ctx context.Context, q execer, cond string, now time.Time, args ...any) (int64, error) {
	res, err := q.ExecContext(ctx, `UPDATE sessions SET revoked_at = ?1
		WHERE revoked_at IS NULL AND expires_at > ?1 AND `+cond, append([]any{micros(now)}, args...)...)
	return affected(res, err)
}

func affected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// ListSessions lists the live sessions at now, of one device when deviceID is
// not empty, oldest first.
func (s *Store) ListSessions(ctx context.Context, deviceID string, now time.Time) ([]auth.Session, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT `+sessionColumns+` FROM sessions s LEFT JOIN users u ON u.id = s.user_id
		WHERE (?1 = '' OR s.device_id = ?1) AND s.revoked_at IS NULL AND s.expires_at > ?2
		ORDER BY s.created_at, s.id`, deviceID, micros(now))
	if err != nil {
		return nil, wrap("list sessions", err)
	}
	defer rows.Close()
	list := []auth.Session{}
	for rows.Next() {
		sess, err := scanSession(rows)
		if err != nil {
			return nil, wrap("list sessions", err)
		}
		list = append(list, sess)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list sessions", err)
	}
	return list, nil
}

// DeleteExpired deletes up to limit sessions that expired before now and
// returns how many. Callers loop until it returns fewer than limit: small
// batches keep each write transaction short, so cleaning a million rows
// never holds the write lock long enough to stall logins.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time, limit int) (int64, error) {
	res, err := s.write.ExecContext(ctx, `
		DELETE FROM sessions WHERE id IN (
			SELECT id FROM sessions WHERE expires_at <= ?1
			ORDER BY expires_at LIMIT ?2)`, micros(now), limit)
	n, err := affected(res, err)
	if err != nil {
		return 0, wrap("delete expired sessions", err)
	}
	return n, nil
}

// CountLiveSessions counts sessions neither revoked nor expired at now.
func (s *Store) CountLiveSessions(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > ?1`,
		micros(now)).Scan(&n)
	return n, wrap("count live sessions", err)
}
