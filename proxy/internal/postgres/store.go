package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// Store keeps devices, users, sessions and signing keys in PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return wrap("ping", s.pool.Ping(ctx)) }

// AddUser creates a user, and its device when the device is new.
func (s *Store) AddUser(ctx context.Context, deviceID, username, passwordHash string, isAdmin bool) (auth.User, error) {
	var u auth.User
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO devices (id) VALUES ($1) ON CONFLICT (id) DO NOTHING`, deviceID); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `
			INSERT INTO users (device_id, username, password_hash, is_admin)
			VALUES ($1, $2, $3, $4)
			RETURNING id::text, device_id, username, is_admin, created_at`,
			deviceID, username, passwordHash, isAdmin,
		).Scan(&u.ID, &u.DeviceID, &u.Username, &u.IsAdmin, &u.CreatedAt); err != nil {
			return err
		}
		return record(ctx, tx)
	})
	return u, wrap("add user", err)
}

// UserCredentials returns the user and its password hash.
func (s *Store) UserCredentials(ctx context.Context, deviceID, username string) (auth.User, string, error) {
	var u auth.User
	var hash string
	err := s.pool.QueryRow(ctx, `
		SELECT id::text, device_id, username, is_admin, created_at, password_hash
		FROM users WHERE device_id = $1 AND username = $2`, deviceID, username,
	).Scan(&u.ID, &u.DeviceID, &u.Username, &u.IsAdmin, &u.CreatedAt, &hash)
	return u, hash, wrap("find user", err)
}

// SetPassword replaces a user's password hash and revokes the user's live
// sessions at now: whoever knew the old password must log in again.
func (s *Store) SetPassword(ctx context.Context, deviceID, username, passwordHash string, now time.Time) (auth.User, int64, error) {
	var u auth.User
	var revoked int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			UPDATE users SET password_hash = $3, updated_at = $4
			WHERE device_id = $1 AND username = $2
			RETURNING id::text, device_id, username, is_admin, created_at`,
			deviceID, username, passwordHash, now,
		).Scan(&u.ID, &u.DeviceID, &u.Username, &u.IsAdmin, &u.CreatedAt)
		if err != nil {
			return err
		}
		if revoked, err = revokeWhere(ctx, tx, "user_id = $2::uuid", now, u.ID); err != nil {
			return err
		}
		return record(ctx, tx)
	})
	return u, revoked, wrap("set password", err)
}

// RemoveUser deletes a user; its sessions go with it.
func (s *Store) RemoveUser(ctx context.Context, deviceID, username string) (auth.User, int64, error) {
	var u auth.User
	var sessions int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			SELECT id::text, device_id, username, is_admin, created_at
			FROM users WHERE device_id = $1 AND username = $2 FOR UPDATE`,
			deviceID, username,
		).Scan(&u.ID, &u.DeviceID, &u.Username, &u.IsAdmin, &u.CreatedAt)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1::uuid AND revoked_at IS NULL`, u.ID)
		if err != nil {
			return err
		}
		sessions = tag.RowsAffected()
		if _, err = tx.Exec(ctx, `DELETE FROM users WHERE id = $1::uuid`, u.ID); err != nil {
			return err
		}
		return record(ctx, tx)
	})
	return u, sessions, wrap("remove user", err)
}

// ListUsers lists users, of one device when deviceID is not empty.
func (s *Store) ListUsers(ctx context.Context, deviceID string) ([]auth.User, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id::text, device_id, username, is_admin, created_at FROM users
		WHERE $1 = '' OR device_id = $1
		ORDER BY device_id, username`, deviceID)
	if err != nil {
		return nil, wrap("list users", err)
	}
	users, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (auth.User, error) {
		var u auth.User
		err := row.Scan(&u.ID, &u.DeviceID, &u.Username, &u.IsAdmin, &u.CreatedAt)
		return u, err
	})
	return users, wrap("list users", err)
}

// ImportUsers adds users and their devices in one transaction; see
// identity.Store.
func (s *Store) ImportUsers(ctx context.Context, users []auth.ImportedUser, update, commit bool, now time.Time) (auth.ImportResult, error) {
	var res auth.ImportResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, u := range users {
			if _, err := tx.Exec(ctx, `INSERT INTO devices (id) VALUES ($1) ON CONFLICT (id) DO NOTHING`, u.DeviceID); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, `
				INSERT INTO users (device_id, username, password_hash, is_admin) VALUES ($1, $2, $3, $4)
				ON CONFLICT (device_id, username) DO NOTHING`, u.DeviceID, u.Username, u.PasswordHash, u.IsAdmin)
			switch {
			case err != nil:
				return err
			case tag.RowsAffected() == 1:
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
			if err := tx.QueryRow(ctx, `
				UPDATE users SET password_hash = $3, is_admin = $4, updated_at = $5
				WHERE device_id = $1 AND username = $2 RETURNING id::text`,
				u.DeviceID, u.Username, u.PasswordHash, u.IsAdmin, now).Scan(&id); err != nil {
				return err
			}
			// A replaced password ends the sessions made with the old one,
			// as proxy user passwd does.
			if _, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = $2 WHERE user_id = $1::uuid AND revoked_at IS NULL AND expires_at > $2`, id, now); err != nil {
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

// SigningKeyPEM returns the stored generated signing key. When there is
// none it stores the one generate makes; when several replicas start at once
// exactly one key wins and all of them return it.
func (s *Store) SigningKeyPEM(ctx context.Context, generate func() (id string, pem []byte, err error)) ([]byte, error) {
	var pem string
	err := s.pool.QueryRow(ctx, `SELECT private_pem FROM signing_keys ORDER BY created_at, id LIMIT 1`).Scan(&pem)
	if err == nil {
		return []byte(pem), nil
	}
	if err != pgx.ErrNoRows {
		return nil, wrap("read signing key", err)
	}
	id, fresh, err := generate()
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	// A transaction-level advisory lock serializes first starts, so that two
	// replicas cannot each insert a different key.
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('authsidecar signing key ' || current_schema()))`); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `SELECT private_pem FROM signing_keys ORDER BY created_at, id LIMIT 1`).Scan(&pem)
		if err != pgx.ErrNoRows {
			return err
		}
		pem = string(fresh)
		_, err = tx.Exec(ctx, `INSERT INTO signing_keys (id, private_pem) VALUES ($1, $2)`, id, pem)
		return err
	})
	if err != nil {
		return nil, wrap("store signing key", err)
	}
	return []byte(pem), nil
}

// TryExclusive takes the advisory lock name (per schema) without waiting,
// in a transaction of its own that stays open until release commits it.
// ok is false when another process holds it; should the process die
// instead, the database ends the transaction, and the lock, with its
// connection.
//
// A transaction-level lock, not a session-level one: through a pooler in
// transaction mode (PgBouncer) a session lock stays on whichever server
// connection it was taken on, and the unlock may reach another one, while
// a transaction keeps its server connection to the end. The lock holds a
// connection (of the pool, and of the pooler's) for as long as the caller
// holds the lock; the work done under it runs on others.
func (s *Store) TryExclusive(ctx context.Context, name string) (release func(), ok bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, false, wrap("begin", err)
	}
	const key = `hashtextextended('authsidecar ' || $1 || ' ' || current_schema(), 0)`
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(`+key+`)`, name).Scan(&ok); err != nil || !ok {
		rollback(tx)
		return nil, false, wrap("advisory lock", err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// A commit that fails leaves the connection in a transaction or
		// broken, and the pool closes it rather than reuse it: the lock
		// ends with it either way.
		_ = tx.Commit(ctx)
	}, true, nil
}

// rollback ends a transaction whose caller has given up on it, even when
// the caller's context has ended.
func rollback(tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = tx.Rollback(ctx)
}
