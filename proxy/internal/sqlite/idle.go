package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/session"
)

// TouchSessions records when sessions were last used, never moving a
// session's record back.
func (s *Store) TouchSessions(ctx context.Context, uses []session.Use) error {
	if len(uses) == 0 {
		return nil
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		for _, u := range uses {
			if _, err := tx.ExecContext(ctx, `
				UPDATE sessions SET last_seen_at = max(coalesce(last_seen_at, created_at), ?2) WHERE id = ?1`,
				u.ID, micros(u.At)); err != nil {
				return err
			}
		}
		return nil
	})
	return wrap("touch sessions", err)
}

// RevokeOtherUsers revokes the live sessions of a device that are not
// keepUserID's, and returns how many.
func (s *Store) RevokeOtherUsers(ctx context.Context, deviceID, keepUserID string, now time.Time) (int64, error) {
	var n int64
	err := s.change(ctx, func(q execer) error {
		var err error
		n, err = revokeWhere(ctx, q, `device_id = ?2 AND user_id IS NOT ?3`, now, deviceID, keepUserID)
		return err
	})
	return n, wrap("revoke other users' sessions", err)
}
