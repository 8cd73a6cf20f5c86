package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/authsidecar/authsidecar/storage-backend/internal/record"
)

// timeLayout is how times are stored: UTC, microseconds (PostgreSQL's
// precision), fixed width so that text order is time order.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// Store is a record.Store in SQLite.
type Store struct {
	db *sql.DB
	// Now gives the time written to created_at and updated_at.
	// If nil, time.Now is used.
	Now func() time.Time

	// writer lets one write at a time through. SQLite takes one writer at
	// a time anyway; waiting here, in order and for as long as the request
	// may, is fairer than SQLite's busy handler, which polls with growing
	// sleeps and gives up after its timeout.
	writer chan struct{}
}

var _ record.Store = (*Store)(nil)

// NewStore returns a store that works through db, a pool from Open.
func NewStore(db *sql.DB) *Store {
	return &Store{db: db, writer: make(chan struct{}, 1)}
}

func (s *Store) now() time.Time {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	// The same rounding as the PostgreSQL store: the times we write equal
	// the times we read back, whichever store it is.
	return now().UTC().Truncate(time.Microsecond)
}

func (s *Store) lockWrites(ctx context.Context) error {
	select {
	case s.writer <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) unlockWrites() { <-s.writer }

// A new key is inserted; an existing one is left to the UPDATE that follows
// in the same transaction. That tells created from replaced, and because
// the INSERT is the transaction's first statement, it takes the write lock
// before anything is read.
const (
	insertSQL = `INSERT INTO storage_records (device_id, key, data, meta, created_at, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?5)
ON CONFLICT (device_id, key) DO NOTHING
RETURNING created_at, updated_at`
	updateSQL = `UPDATE storage_records SET data = ?3, meta = ?4, updated_at = ?5
WHERE device_id = ?1 AND key = ?2
RETURNING created_at, updated_at`
)

// Put implements record.Store. Data and Meta are stored as compact JSON
// text: white space between tokens goes, everything else (key order,
// duplicate keys, the spelling of numbers and escapes) stays as sent. A
// record without Meta is stored with {}.
func (s *Store) Put(ctx context.Context, r record.Record) (record.Record, bool, error) {
	if err := r.Validate(); err != nil {
		return record.Record{}, false, err
	}
	data, err := compact(r.Data)
	if err != nil {
		return record.Record{}, false, err
	}
	meta := "{}"
	if len(r.Meta) > 0 {
		if meta, err = compact(r.Meta); err != nil {
			return record.Record{}, false, err
		}
	} else {
		r.Meta = json.RawMessage(meta)
	}
	now := s.now().Format(timeLayout)

	if err := s.lockWrites(ctx); err != nil {
		return record.Record{}, false, fmt.Errorf("put record: %w", err)
	}
	defer s.unlockWrites()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return record.Record{}, false, translate(ctx, "put record", err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit

	created := true
	var createdAt, updatedAt string
	err = tx.QueryRowContext(ctx, insertSQL, r.DeviceID, r.Key, data, meta, now).Scan(&createdAt, &updatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		created = false
		err = tx.QueryRowContext(ctx, updateSQL, r.DeviceID, r.Key, data, meta, now).Scan(&createdAt, &updatedAt)
	}
	if err != nil {
		return record.Record{}, false, translate(ctx, "put record", err)
	}
	if err := tx.Commit(); err != nil {
		return record.Record{}, false, translate(ctx, "put record", err)
	}
	if r.CreatedAt, r.UpdatedAt, err = parseTimes(createdAt, updatedAt); err != nil {
		return record.Record{}, false, fmt.Errorf("put record: %w", err)
	}
	return r, created, nil
}

// Get implements record.Store.
func (s *Store) Get(ctx context.Context, deviceID, key string) (record.Record, error) {
	var data, meta, createdAt, updatedAt string
	err := s.db.QueryRowContext(ctx,
		`SELECT data, meta, created_at, updated_at FROM storage_records WHERE device_id = ?1 AND key = ?2`,
		deviceID, key,
	).Scan(&data, &meta, &createdAt, &updatedAt)
	if err != nil {
		return record.Record{}, translate(ctx, "get record", err)
	}
	r := record.Record{DeviceID: deviceID, Key: key, Data: json.RawMessage(data), Meta: json.RawMessage(meta)}
	if r.CreatedAt, r.UpdatedAt, err = parseTimes(createdAt, updatedAt); err != nil {
		return record.Record{}, fmt.Errorf("get record: %w", err)
	}
	return r, nil
}

// List implements record.Store. The prefix is compared as text, not as a
// LIKE pattern, so '%' and '_' in it match only themselves; key >= prefix
// lets the primary key's index start at the first candidate.
func (s *Store) List(ctx context.Context, deviceID, prefix string, limit int) ([]record.Record, error) {
	if err := record.ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	if limit < 1 {
		return nil, record.Invalid("limit must be at least 1")
	}
	rows, err := s.db.QueryContext(ctx,
		`SELECT key, created_at, updated_at FROM storage_records
		 WHERE device_id = ?1 AND key >= ?2 AND substr(key, 1, length(?2)) = ?2
		 ORDER BY key
		 LIMIT ?3`,
		deviceID, prefix, limit,
	)
	if err != nil {
		return nil, translate(ctx, "list records", err)
	}
	defer rows.Close()
	var list []record.Record
	for rows.Next() {
		r := record.Record{DeviceID: deviceID}
		var createdAt, updatedAt string
		if err := rows.Scan(&r.Key, &createdAt, &updatedAt); err != nil {
			return nil, translate(ctx, "list records", err)
		}
		if r.CreatedAt, r.UpdatedAt, err = parseTimes(createdAt, updatedAt); err != nil {
			return nil, fmt.Errorf("list records: %w", err)
		}
		list = append(list, r)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(ctx, "list records", err)
	}
	return list, nil
}

// Delete implements record.Store.
func (s *Store) Delete(ctx context.Context, deviceID, key string) error {
	if err := s.lockWrites(ctx); err != nil {
		return fmt.Errorf("delete record: %w", err)
	}
	defer s.unlockWrites()
	res, err := s.db.ExecContext(ctx,
		`DELETE FROM storage_records WHERE device_id = ?1 AND key = ?2`, deviceID, key)
	if err != nil {
		return translate(ctx, "delete record", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return translate(ctx, "delete record", err)
	}
	if n == 0 {
		return record.ErrNotFound
	}
	return nil
}

// compact returns raw, valid JSON (record.Validate checked it), without the
// white space between its tokens.
func compact(raw json.RawMessage) (string, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return "", record.Invalid("the value is not valid JSON")
	}
	return b.String(), nil
}

func parseTimes(createdAt, updatedAt string) (time.Time, time.Time, error) {
	c, err := time.Parse(timeLayout, createdAt)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("stored created_at: %w", err)
	}
	u, err := time.Parse(timeLayout, updatedAt)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("stored updated_at: %w", err)
	}
	return c, u, nil
}

// translate turns driver errors a caller can act on into record errors and
// wraps the rest with what was being done. When ctx ended, its error is the
// cause (SQLite reports an interrupted statement), so that callers can tell
// a client that went away from a fault.
func translate(ctx context.Context, op string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return record.ErrNotFound
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return fmt.Errorf("%s: %w (%v)", op, ctxErr, err)
	}
	var sqliteErr *sqlite.Error
	if errors.As(err, &sqliteErr) {
		switch sqliteErr.Code() {
		case sqlite3.SQLITE_TOOBIG:
			return record.Invalid("the value is too large to store")
		case sqlite3.SQLITE_CONSTRAINT_CHECK: // meta must be an object
			return record.Invalid("meta must be a JSON object")
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}
