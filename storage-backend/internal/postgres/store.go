// Package postgres keeps records in PostgreSQL and carries the migrations
// that create and change the schema. Driver errors are translated here, at
// the boundary: no caller sees pgx.ErrNoRows or a SQLSTATE.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/authsidecar/authsidecar/storage-backend/internal/record"
)

// DB is what the store needs from PostgreSQL. Both *pgxpool.Pool and pgx.Tx
// satisfy it, so a caller can run the store inside a transaction of its own.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Store is a record.Store in PostgreSQL.
type Store struct {
	db DB
	// Now gives the time written to created_at and updated_at.
	// If nil, time.Now is used.
	Now func() time.Time
}

var _ record.Store = (*Store)(nil)

// NewStore returns a store that works through db.
func NewStore(db DB) *Store {
	return &Store{db: db}
}

func (s *Store) now() time.Time {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	// PostgreSQL keeps microseconds; rounding here makes the times we write
	// equal the times we read back.
	return now().UTC().Truncate(time.Microsecond)
}

// The upsert is one statement, so concurrent puts of one key cannot both
// "create" it. xmax is 0 on a row version that an INSERT created and is set
// when ON CONFLICT updated an existing row: that tells created from replaced.
const putSQL = `
INSERT INTO storage_records AS r (device_id, key, data, meta, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $5)
ON CONFLICT (device_id, key) DO UPDATE
SET data = EXCLUDED.data, meta = EXCLUDED.meta, updated_at = EXCLUDED.updated_at
RETURNING r.created_at, r.updated_at, (r.xmax = 0) AS inserted`

// Put implements record.Store. A record without Meta is stored with {}.
func (s *Store) Put(ctx context.Context, r record.Record) (record.Record, bool, error) {
	if err := r.Validate(); err != nil {
		return record.Record{}, false, err
	}
	if len(r.Meta) == 0 {
		r.Meta = json.RawMessage("{}")
	}
	var created bool
	err := s.db.QueryRow(ctx, putSQL, r.DeviceID, r.Key, r.Data, r.Meta, s.now()).
		Scan(&r.CreatedAt, &r.UpdatedAt, &created)
	if err != nil {
		return record.Record{}, false, translate("put record", err)
	}
	r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	return r, created, nil
}

// Get implements record.Store.
func (s *Store) Get(ctx context.Context, deviceID, key string) (record.Record, error) {
	r := record.Record{DeviceID: deviceID, Key: key}
	var data, meta []byte
	err := s.db.QueryRow(ctx,
		`SELECT data, meta, created_at, updated_at FROM storage_records WHERE device_id = $1 AND key = $2`,
		deviceID, key,
	).Scan(&data, &meta, &r.CreatedAt, &r.UpdatedAt)
	if err != nil {
		return record.Record{}, translate("get record", err)
	}
	r.Data, r.Meta = data, meta
	r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	return r, nil
}

// List implements record.Store. starts_with takes the prefix literally, so
// '%' and '_' in a prefix match only themselves (unlike LIKE).
func (s *Store) List(ctx context.Context, deviceID, prefix string, limit int) ([]record.Record, error) {
	if err := record.ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	if limit < 1 {
		return nil, record.Invalid("limit must be at least 1")
	}
	rows, err := s.db.Query(ctx,
		`SELECT key, created_at, updated_at FROM storage_records
		 WHERE device_id = $1 AND starts_with(key, $2)
		 ORDER BY key
		 LIMIT $3`,
		deviceID, prefix, limit,
	)
	if err != nil {
		return nil, translate("list records", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (record.Record, error) {
		r := record.Record{DeviceID: deviceID}
		if err := row.Scan(&r.Key, &r.CreatedAt, &r.UpdatedAt); err != nil {
			return r, err
		}
		r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
		return r, nil
	})
	if err != nil {
		return nil, translate("list records", err)
	}
	return list, nil
}

// Delete implements record.Store.
func (s *Store) Delete(ctx context.Context, deviceID, key string) error {
	tag, err := s.db.Exec(ctx,
		`DELETE FROM storage_records WHERE device_id = $1 AND key = $2`, deviceID, key)
	if err != nil {
		return translate("delete record", err)
	}
	if tag.RowsAffected() == 0 {
		return record.ErrNotFound
	}
	return nil
}

// translate turns driver errors a caller can act on into record errors and
// wraps the rest with what was being done.
func translate(op string, err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return record.ErrNotFound
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "22P05", "22021": // untranslatable_character, character_not_in_repertoire
			// JSON text may carry \u0000, which jsonb cannot hold.
			return record.Invalid("the JSON contains a character the database cannot store (such as \\u0000)")
		case "22P02": // invalid_text_representation
			return record.Invalid("the value is not valid JSON")
		case "22003": // numeric_value_out_of_range: valid JSON, but a number jsonb cannot hold (1e999999)
			return record.Invalid("the JSON contains a number too large or too small to store")
		case "23514": // check_violation: meta must be an object
			return record.Invalid("meta must be a JSON object")
		case "54000": // program_limit_exceeded, e.g. a value too large for jsonb
			return record.Invalid("the value is too large to store")
		}
	}
	if unavailable(err) {
		return fmt.Errorf("%s: %w: %w", op, record.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// unavailable reports whether err means the database could not be asked
// or could not answer, rather than that it refused this statement: the
// connection could not be made, was refused, reset, closed or timed out,
// or the server answered about its own state (class 08, connection
// exceptions; 57P01–57P03, shutting down, crashed, starting up; 53300, too
// many connections). A client should retry these (503), not read them as
// a bug of ours (500).
func unavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", pgErr.Code == "53300":
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded)
}
