package postgres

import (
	"context"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/session"
)

// TouchSessions records when sessions were last used, never moving a
// session's record back (another replica may have seen a later use).
func (s *Store) TouchSessions(ctx context.Context, uses []session.Use) error {
	if len(uses) == 0 {
		return nil
	}
	ids := make([]string, len(uses))
	at := make([]time.Time, len(uses))
	for i, u := range uses {
		ids[i], at[i] = u.ID, u.At
	}
	_, err := s.pool.Exec(ctx, `
		UPDATE sessions s SET last_seen_at = greatest(coalesce(s.last_seen_at, s.created_at), v.at)
		FROM unnest($1::text[], $2::timestamptz[]) AS v(id, at)
		WHERE s.id = v.id`, ids, at)
	return wrap("touch sessions", err)
}

// RevokeOtherUsers revokes the live sessions of a device that are not
// keepUserID's, and returns how many.
func (s *Store) RevokeOtherUsers(ctx context.Context, deviceID, keepUserID string, now time.Time) (int64, error) {
	var n int64
	err := s.change(ctx, func(q Querier) error {
		var err error
		n, err = revokeWhere(ctx, q, `device_id = $2 AND user_id IS DISTINCT FROM $3::uuid`, now, deviceID, keepUserID)
		return err
	})
	return n, wrap("revoke other users' sessions", err)
}
