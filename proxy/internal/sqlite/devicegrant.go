package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/devicegrant"
)

var _ devicegrant.Store = (*Store)(nil)

const deviceCodeColumns = `id, code_hash, user_code, device_id, public_key, client_addr, user_agent,
	created_at, expires_at, interval_seconds, last_polled_at, status, decided_at, session_id, sealed_token`

func scanDeviceCode(row rowScanner) (auth.DeviceCode, error) {
	var c auth.DeviceCode
	var created, expires, interval int64
	var status string
	var polled, decided sql.NullInt64
	err := row.Scan(&c.ID, &c.CodeHash, &c.UserCode, &c.DeviceID, &c.PublicKey, &c.ClientAddr, &c.UserAgent,
		&created, &expires, &interval, &polled, &status, &decided, &c.SessionID, &c.SealedToken)
	c.CreatedAt, c.ExpiresAt = fromMicros(created), fromMicros(expires)
	c.Interval = time.Duration(interval) * time.Second
	c.Status = auth.DeviceCodeStatus(status)
	c.LastPolledAt, c.DecidedAt = nullTime(polled), nullTime(decided)
	return c, err
}

// nullMicros is t for a nullable time column: NULL for the zero time.
func nullMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: micros(t), Valid: true}
}

// CreateDeviceCode stores a new pending request, replacing an expired one
// that had its user code.
func (s *Store) CreateDeviceCode(ctx context.Context, c auth.DeviceCode) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM device_codes WHERE user_code = ?1 AND expires_at <= ?2`,
			c.UserCode, micros(c.CreatedAt)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `
			INSERT INTO device_codes (id, code_hash, user_code, device_id, public_key, client_addr, user_agent,
				created_at, expires_at, interval_seconds, status)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending')`,
			c.ID, c.CodeHash, c.UserCode, c.DeviceID, c.PublicKey, c.ClientAddr, c.UserAgent,
			micros(c.CreatedAt), micros(c.ExpiresAt), int64(c.Interval/time.Second))
		return err
	})
	return wrap("create device code", err)
}

// DeviceCodeByHash finds a request by the hash of its device code.
func (s *Store) DeviceCodeByHash(ctx context.Context, hash string) (auth.DeviceCode, error) {
	c, err := scanDeviceCode(s.read.QueryRowContext(ctx, `SELECT `+deviceCodeColumns+` FROM device_codes WHERE code_hash = ?1`, hash))
	return c, wrap("find device code", err)
}

// DeviceCodeByUserCode finds a request by its user code.
func (s *Store) DeviceCodeByUserCode(ctx context.Context, userCode string) (auth.DeviceCode, error) {
	c, err := scanDeviceCode(s.read.QueryRowContext(ctx, `SELECT `+deviceCodeColumns+` FROM device_codes WHERE user_code = ?1`, userCode))
	return c, wrap("find user code", err)
}

// PollDeviceCode records a poll, unless another poll came since prev.
func (s *Store) PollDeviceCode(ctx context.Context, id string, prev, now time.Time, interval time.Duration) (auth.DeviceCode, error) {
	c, err := scanDeviceCode(s.write.QueryRowContext(ctx, `
		UPDATE device_codes SET last_polled_at = ?3, interval_seconds = ?4
		WHERE id = ?1 AND last_polled_at IS ?2
		RETURNING `+deviceCodeColumns, id, nullMicros(prev), micros(now), int64(interval/time.Second)))
	return c, wrap("record device poll", err)
}

// DecideDeviceCode approves or denies a pending, live request, with its
// event. The embedded store serves one process, whose service wakes its
// own polls: there is nobody else to tell.
func (s *Store) DecideDeviceCode(ctx context.Context, id string, d auth.DeviceDecision) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		n, err := affected(tx.ExecContext(ctx, `
			UPDATE device_codes SET status = ?2, decided_at = ?3, session_id = ?4, sealed_token = ?5
			WHERE id = ?1 AND status = 'pending' AND expires_at > ?3`,
			id, string(d.Status), micros(d.At), d.SessionID, d.SealedToken))
		if err != nil {
			return err
		}
		if n == 0 {
			return auth.ErrNotFound // and no event: nothing changed
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
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT sealed_token FROM device_codes WHERE id = ?1 AND status = 'approved'`,
			id).Scan(&sealed); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE device_codes SET status = 'redeemed', sealed_token = NULL WHERE id = ?1`, id)
		return err
	})
	return sealed, wrap("redeem device code", err)
}

// ReserveDeviceGuess counts one guess of clientAddr in its window, unless
// max are counted already. The upsert and, when it counted nothing, the
// read of the window run in one IMMEDIATE transaction.
func (s *Store) ReserveDeviceGuess(ctx context.Context, clientAddr string, now time.Time, window time.Duration, max int) (bool, time.Time, error) {
	var start int64
	ok := true
	err := s.tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `
			INSERT INTO device_code_guesses AS g (client_addr, window_start, failures) VALUES (?1, ?2, 1)
			ON CONFLICT (client_addr) DO UPDATE SET
				window_start = CASE WHEN g.window_start <= ?3 THEN ?2 ELSE g.window_start END,
				failures = CASE WHEN g.window_start <= ?3 THEN 1 ELSE g.failures + 1 END
			WHERE g.window_start <= ?3 OR g.failures < ?4
			RETURNING window_start`, clientAddr, micros(now), micros(now.Add(-window)), max).Scan(&start)
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		ok = false
		return tx.QueryRowContext(ctx, `SELECT window_start FROM device_code_guesses WHERE client_addr = ?1`, clientAddr).Scan(&start)
	})
	if err != nil {
		return false, time.Time{}, wrap("count user code guess", err)
	}
	return ok, fromMicros(start).Add(window), nil
}

// ReleaseDeviceGuess takes back one reserved guess.
func (s *Store) ReleaseDeviceGuess(ctx context.Context, clientAddr string) error {
	_, err := s.write.ExecContext(ctx, `UPDATE device_code_guesses SET failures = max(failures - 1, 0) WHERE client_addr = ?1`, clientAddr)
	return wrap("release user code guess", err)
}

// DeleteDeviceCodesExpiredBefore deletes up to limit requests that expired
// before before.
func (s *Store) DeleteDeviceCodesExpiredBefore(ctx context.Context, before time.Time, limit int) (int64, error) {
	n, err := affected(s.write.ExecContext(ctx, `
		DELETE FROM device_codes WHERE id IN (
			SELECT id FROM device_codes WHERE expires_at < ?1 LIMIT ?2)`, micros(before), limit))
	return n, wrap("delete expired device codes", err)
}

// DeleteDeviceGuessesBefore deletes up to limit guess windows that started
// before before.
func (s *Store) DeleteDeviceGuessesBefore(ctx context.Context, before time.Time, limit int) (int64, error) {
	n, err := affected(s.write.ExecContext(ctx, `
		DELETE FROM device_code_guesses WHERE client_addr IN (
			SELECT client_addr FROM device_code_guesses WHERE window_start < ?1 LIMIT ?2)`, micros(before), limit))
	return n, wrap("delete user code guess windows", err)
}
