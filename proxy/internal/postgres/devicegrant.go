package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/devicegrant"
)

var _ devicegrant.Store = (*Store)(nil)

const deviceCodeColumns = `id, code_hash, user_code, device_id, public_key, client_addr, user_agent,
	created_at, expires_at, interval_seconds, last_polled_at, status, decided_at, session_id, sealed_token`

func scanDeviceCode(row pgx.Row) (auth.DeviceCode, error) {
	var c auth.DeviceCode
	var interval int32
	var status string
	var polled, decided pgtype.Timestamptz
	err := row.Scan(&c.ID, &c.CodeHash, &c.UserCode, &c.DeviceID, &c.PublicKey, &c.ClientAddr, &c.UserAgent,
		&c.CreatedAt, &c.ExpiresAt, &interval, &polled, &status, &decided, &c.SessionID, &c.SealedToken)
	c.CreatedAt, c.ExpiresAt = c.CreatedAt.UTC(), c.ExpiresAt.UTC()
	c.Interval = time.Duration(interval) * time.Second
	c.Status = auth.DeviceCodeStatus(status)
	c.LastPolledAt, c.DecidedAt = utcOrZero(polled), utcOrZero(decided)
	return c, err
}

func utcOrZero(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// nullable is t for a nullable column: NULL for the zero time.
func nullable(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// CreateDeviceCode stores a new pending request, replacing an expired one
// that had its user code.
func (s *Store) CreateDeviceCode(ctx context.Context, c auth.DeviceCode) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM device_codes WHERE user_code = $1 AND expires_at <= $2`,
			c.UserCode, c.CreatedAt); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO device_codes (id, code_hash, user_code, device_id, public_key, client_addr, user_agent,
				created_at, expires_at, interval_seconds, status)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending')`,
			c.ID, c.CodeHash, c.UserCode, c.DeviceID, c.PublicKey, c.ClientAddr, c.UserAgent,
			c.CreatedAt, c.ExpiresAt, int32(c.Interval/time.Second))
		return err
	})
	return wrap("create device code", err)
}

// DeviceCodeByHash finds a request by the hash of its device code.
func (s *Store) DeviceCodeByHash(ctx context.Context, hash string) (auth.DeviceCode, error) {
	c, err := scanDeviceCode(s.pool.QueryRow(ctx, `SELECT `+deviceCodeColumns+` FROM device_codes WHERE code_hash = $1`, hash))
	return c, wrap("find device code", err)
}

// DeviceCodeByUserCode finds a request by its user code.
func (s *Store) DeviceCodeByUserCode(ctx context.Context, userCode string) (auth.DeviceCode, error) {
	c, err := scanDeviceCode(s.pool.QueryRow(ctx, `SELECT `+deviceCodeColumns+` FROM device_codes WHERE user_code = $1`, userCode))
	return c, wrap("find user code", err)
}

// PollDeviceCode records a poll, unless another poll came since prev.
func (s *Store) PollDeviceCode(ctx context.Context, id string, prev, now time.Time, interval time.Duration) (auth.DeviceCode, error) {
	c, err := scanDeviceCode(s.pool.QueryRow(ctx, `
		UPDATE device_codes SET last_polled_at = $3, interval_seconds = $4
		WHERE id = $1 AND last_polled_at IS NOT DISTINCT FROM $2
		RETURNING `+deviceCodeColumns, id, nullable(prev), now, int32(interval/time.Second)))
	return c, wrap("record device poll", err)
}

// DecideDeviceCode approves or denies a pending, live request, with its
// event, and tells every replica (the payload NotifyPrefix + id, on the
// channel of session changes) so that the poll waiting on any of them
// answers at once.
func (s *Store) DecideDeviceCode(ctx context.Context, id string, d auth.DeviceDecision) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE device_codes SET status = $2, decided_at = $3, session_id = $4, sealed_token = $5
			WHERE id = $1 AND status = 'pending' AND expires_at > $3`,
			id, string(d.Status), d.At, d.SessionID, d.SealedToken)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return auth.ErrNotFound // and no event: nothing changed
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify('authsidecar_' || left(md5(current_schema()), 16), $1)`,
			devicegrant.NotifyPrefix+id); err != nil {
			return err
		}
		return record(ctx, tx)
	})
	if errors.Is(err, auth.ErrNotFound) {
		return err
	}
	return wrap("decide device code", err)
}

// RedeemDeviceCode marks an approved request redeemed and returns the
// sealed token it forgets.
func (s *Store) RedeemDeviceCode(ctx context.Context, id string, now time.Time) ([]byte, error) {
	var sealed []byte
	err := s.pool.QueryRow(ctx, `
		UPDATE device_codes d SET status = 'redeemed', sealed_token = NULL
		FROM (SELECT id, sealed_token FROM device_codes WHERE id = $1 AND status = 'approved' FOR UPDATE) old
		WHERE d.id = old.id
		RETURNING old.sealed_token`, id).Scan(&sealed)
	return sealed, wrap("redeem device code", err)
}

// ReserveDeviceGuess counts one guess of clientAddr in its window, unless
// max are counted already.
func (s *Store) ReserveDeviceGuess(ctx context.Context, clientAddr string, now time.Time, window time.Duration, max int) (bool, time.Time, error) {
	var start pgtype.Timestamptz
	err := s.pool.QueryRow(ctx, `
		INSERT INTO device_code_guesses AS g (client_addr, window_start, failures) VALUES ($1, $2, 1)
		ON CONFLICT (client_addr) DO UPDATE SET
			window_start = CASE WHEN g.window_start <= $3 THEN $2 ELSE g.window_start END,
			failures = CASE WHEN g.window_start <= $3 THEN 1 ELSE g.failures + 1 END
		WHERE g.window_start <= $3 OR g.failures < $4
		RETURNING window_start`, clientAddr, now, now.Add(-window), max).Scan(&start)
	if err == nil {
		return true, start.Time.Add(window), nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return false, time.Time{}, wrap("count user code guess", err)
	}
	// Refused: the full window's end says when to come back.
	err = s.pool.QueryRow(ctx, `SELECT window_start FROM device_code_guesses WHERE client_addr = $1`, clientAddr).Scan(&start)
	if err != nil {
		return false, time.Time{}, wrap("read user code guesses", err)
	}
	return false, start.Time.Add(window).UTC(), nil
}

// ReleaseDeviceGuess takes back one reserved guess.
func (s *Store) ReleaseDeviceGuess(ctx context.Context, clientAddr string) error {
	_, err := s.pool.Exec(ctx, `UPDATE device_code_guesses SET failures = greatest(failures - 1, 0) WHERE client_addr = $1`, clientAddr)
	return wrap("release user code guess", err)
}

// DeleteDeviceCodesExpiredBefore deletes up to limit requests that expired
// before before.
func (s *Store) DeleteDeviceCodesExpiredBefore(ctx context.Context, before time.Time, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		DELETE FROM device_codes WHERE id IN (
			SELECT id FROM device_codes WHERE expires_at < $1 LIMIT $2)`, before, limit)
	if err != nil {
		return 0, wrap("delete expired device codes", err)
	}
	return tag.RowsAffected(), nil
}

// DeleteDeviceGuessesBefore deletes up to limit guess windows that started
// before before.
func (s *Store) DeleteDeviceGuessesBefore(ctx context.Context, before time.Time, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		DELETE FROM device_code_guesses WHERE client_addr IN (
			SELECT client_addr FROM device_code_guesses WHERE window_start < $1 LIMIT $2)`, before, limit)
	if err != nil {
		return 0, wrap("delete user code guess windows", err)
	}
	return tag.RowsAffected(), nil
}
