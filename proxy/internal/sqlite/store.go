package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/identity"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
)

// Store provides everything the proxy keeps, as the PostgreSQL store does
// (proxy/app.go checks both against the one interface).
var (
	_ session.Store  = (*Store)(nil)
	_ identity.Store = (*Store)(nil)
)

const userColumns = `id, device_id, username, is_admin, created_at`

// rowScanner is a *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(dest ...any) error }

func scanUser(row rowScanner, extra ...any) (auth.User, error) {
	var u auth.User
	var created int64
	err := row.Scan(append([]any{&u.ID, &u.DeviceID, &u.Username, &u.IsAdmin, &created}, extra...)...)
	u.CreatedAt = fromMicros(created)
	return u, err
}

// AddUser creates a user, and its device when the device is new.
func (s *Store) AddUser(ctx context.Context, deviceID, username, passwordHash string, isAdmin bool) (auth.User, error) {
	now := nowMicros()
	u := auth.User{ID: newUUID(), DeviceID: deviceID, Username: username, IsAdmin: isAdmin, CreatedAt: fromMicros(now)}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO devices (id, created_at) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING`,
			deviceID, now); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `
			INSERT INTO users (id, device_id, username, password_hash, is_admin, created_at, updated_at)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)`,
			u.ID, deviceID, username, passwordHash, isAdmin, now)
		if err != nil {
			return err
		}
		return record(ctx, tx)
	})
	if err != nil {
		return auth.User{}, wrap("add user", err)
	}
	return u, nil
}

// ImportUsers adds users and their devices in one transaction; see
// identity.Store.
func (s *Store) ImportUsers(ctx context.Context, users []auth.ImportedUser, update, commit bool, now time.Time) (auth.ImportResult, error) {
	var res auth.ImportResult
	at := micros(now)
	err := s.tx(ctx, func(tx *sql.Tx) error {
		for _, u := range users {
			if _, err := tx.ExecContext(ctx, `INSERT INTO devices (id, created_at) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING`,
				u.DeviceID, at); err != nil {
				return err
			}
			n, err := affected(tx.ExecContext(ctx, `
				INSERT INTO users (id, device_id, username, password_hash, is_admin, created_at, updated_at)
				VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (device_id, username) DO NOTHING`,
				newUUID(), u.DeviceID, u.Username, u.PasswordHash, u.IsAdmin, at))
			switch {
			case err != nil:
				return err
			case n == 1:
				res.Imported++
				if err := recordFor(ctx, tx, u.DeviceID, u.Username, "imported"); err != nil {
					return err
				}
				continue
			case !update:
				res.Skipped++
				continue
			}
			var id string
			if err := tx.QueryRowContext(ctx, `
				UPDATE users SET password_hash = ?3, is_admin = ?4, updated_at = ?5
				WHERE device_id = ?1 AND username = ?2 RETURNING id`,
				u.DeviceID, u.Username, u.PasswordHash, u.IsAdmin, at).Scan(&id); err != nil {
				return err
			}
			// A replaced password ends the sessions made with the old one,
			// as proxy user passwd does.
			if _, err := revokeWhere(ctx, tx, "user_id = ?2", now, id); err != nil {
				return err
			}
			res.Updated++
			if err := recordFor(ctx, tx, u.DeviceID, u.Username, "replaced"); err != nil {
				return err
			}
		}
		if !commit {
			return errDryRun
		}
		return nil
	})
	if errors.Is(err, errDryRun) {
		err = nil
	}
	return res, wrap("import users", err)
}

// errDryRun rolls back a transaction that was only to see what it would do.
var errDryRun = errors.New("dry run: rolled back")

// UserCredentials returns the user and its password hash.
func (s *Store) UserCredentials(ctx context.Context, deviceID, username string) (auth.User, string, error) {
	var hash string
	u, err := scanUser(s.read.QueryRowContext(ctx, `
		SELECT `+userColumns+`, password_hash FROM users WHERE device_id = ?1 AND username = ?2`,
		deviceID, username), &hash)
	return u, hash, wrap("find user", err)
}

// SetPassword replaces a user's password hash and revokes the user's live
// sessions at now: whoever knew the old password must log in again.
func (s *Store) SetPassword(ctx context.Context, deviceID, username, passwordHash string, now time.Time) (auth.User, int64, error) {
	var u auth.User
	var revoked int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		u, err = scanUser(tx.QueryRowContext(ctx, `
			UPDATE users SET password_hash = ?3, updated_at = ?4
			WHERE device_id = ?1 AND username = ?2
			RETURNING `+userColumns,
			deviceID, username, passwordHash, micros(now)))
		if err != nil {
			return err
		}
		if revoked, err = revokeWhere(ctx, tx, "user_id = ?2", now, u.ID); err != nil {
			return err
		}
		return record(ctx, tx)
	})
	return u, revoked, wrap("set password", err)
}

// RemoveUser deletes a user; its sessions go with it. It returns how many
// sessions it ended (those not already revoked).
func (s *Store) RemoveUser(ctx context.Context, deviceID, username string) (auth.User, int64, error) {
	var u auth.User
	var sessions int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		u, err = scanUser(tx.QueryRowContext(ctx, `
			SELECT `+userColumns+` FROM users WHERE device_id = ?1 AND username = ?2`,
			deviceID, username))
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL`, u.ID)
		if err != nil {
			return err
		}
		if sessions, err = res.RowsAffected(); err != nil {
			return err
		}
		// The revoked sessions go by the foreign key's cascade.
		if _, err = tx.ExecContext(ctx, `DELETE FROM users WHERE id = ?1`, u.ID); err != nil {
			return err
		}
		return record(ctx, tx)
	})
	return u, sessions, wrap("remove user", err)
}

// ListUsers lists users, of one device when deviceID is not empty.
func (s *Store) ListUsers(ctx context.Context, deviceID string) ([]auth.User, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT `+userColumns+` FROM users
		WHERE ?1 = '' OR device_id = ?1
		ORDER BY device_id, username`, deviceID)
	if err != nil {
		return nil, wrap("list users", err)
	}
	defer rows.Close()
	users := []auth.User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, wrap("list users", err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list users", err)
	}
	return users, nil
}

// SigningKeyPEM returns the stored generated signing key. When there is
// none it stores the one generate makes; when several callers (or
// processes) start at once exactly one key wins and all of them return it.
func (s *Store) SigningKeyPEM(ctx context.Context, generate func() (id string, pem []byte, err error)) ([]byte, error) {
	const first = `SELECT private_pem FROM signing_keys ORDER BY created_at, id LIMIT 1`
	var pem string
	err := s.read.QueryRowContext(ctx, first).Scan(&pem)
	if err == nil {
		return []byte(pem), nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, wrap("read signing key", err)
	}
	id, fresh, err := generate()
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	// The write transaction (IMMEDIATE) serializes first starts, so that
	// two callers cannot each insert a different key.
	err = s.tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, first).Scan(&pem)
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		pem = string(fresh)
		_, err = tx.ExecContext(ctx, `INSERT INTO signing_keys (id, private_pem, created_at) VALUES (?1, ?2, ?3)`,
			id, pem, nowMicros())
		return err
	})
	if err != nil {
		return nil, wrap("store signing key", err)
	}
	return []byte(pem), nil
}

// TryExclusive takes the lock name of this database without waiting. ok is
// false when another holder, in this process or another, has it. release
// gives it back (calling it again does nothing); should the process die
// instead, the operating system drops the lock with the process.
//
// The lock is a lock file beside the database (FileName.exclusive-NAME.lock)
// held with flock(2), plus a table of the names this process holds, so that
// it is exclusive within the process too, on every file system and
// platform. Where flock is not available (Windows), it is exclusive within
// the process only, which is what the embedded store is for.
func (s *Store) TryExclusive(ctx context.Context, name string) (release func(), ok bool, err error) {
	if s.closed.Load() {
		return nil, false, wrap("exclusive lock", errClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, false, wrap("exclusive lock", err)
	}
	release, ok, err = tryLock(s.path + ".exclusive-" + lockName(name) + ".lock")
	return release, ok, wrap("exclusive lock", err)
}
