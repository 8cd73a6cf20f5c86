package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// change runs f, the statements of one change, and writes the event that
// ctx carries for it (auth.Recording) in the same transaction; without an
// event f runs as it is, and costs no transaction.
func (s *Store) change(ctx context.Context, f func(q execer) error) error {
	if _, ok := auth.RecordedEvent(ctx); !ok {
		return f(s.write)
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := f(tx); err != nil {
			return err
		}
		return record(ctx, tx)
	})
}

// record writes the event ctx carries, if any, on q: for a change that
// already runs in a transaction of its own.
func record(ctx context.Context, q execer) error {
	if ev, ok := auth.RecordedEvent(ctx); ok {
		return insertEvent(ctx, q, ev)
	}
	return nil
}

// recordFor writes the event ctx carries, if any, for one account of a
// change that touches several (an import).
func recordFor(ctx context.Context, q execer, deviceID, username, reason string) error {
	ev, ok := auth.RecordedEvent(ctx)
	if !ok {
		return nil
	}
	ev.DeviceID, ev.Username, ev.Reason = deviceID, username, reason
	return insertEvent(ctx, q, ev)
}

func insertEvent(ctx context.Context, q execer, ev auth.Event) error {
	_, err := q.ExecContext(ctx, `
		INSERT INTO auth_events (time, type, device_id, username, session_id, actor, reason, client_addr)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)`,
		micros(ev.Time), string(ev.Type), ev.DeviceID, ev.Username, ev.SessionID, ev.By, ev.Reason, ev.ClientAddr)
	return err
}

// RecordEvent writes an event that records no change of the store's (a
// login refused for a wrong PIN).
func (s *Store) RecordEvent(ctx context.Context, ev auth.Event) error {
	return wrap("record event", insertEvent(ctx, s.write, ev))
}

// ListEvents lists events oldest first.
func (s *Store) ListEvents(ctx context.Context, f auth.EventFilter) ([]auth.Event, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := s.read.QueryContext(ctx, `
		SELECT id, time, type, device_id, username, session_id, actor, reason, client_addr
		FROM auth_events
		WHERE (?1 = '' OR device_id = ?1) AND (?2 = '' OR username = ?2) AND (?3 = '' OR type = ?3) AND time >= ?4
		ORDER BY time, id LIMIT ?5`,
		f.DeviceID, f.Username, string(f.Type), micros(f.Since), limit)
	if err != nil {
		return nil, wrap("list events", err)
	}
	defer rows.Close()
	var list []auth.Event
	for rows.Next() {
		var ev auth.Event
		var at int64
		var typ string
		if err := rows.Scan(&ev.ID, &at, &typ, &ev.DeviceID, &ev.Username, &ev.SessionID, &ev.By, &ev.Reason, &ev.ClientAddr); err != nil {
			return nil, wrap("list events", err)
		}
		ev.Time, ev.Type = fromMicros(at), auth.EventType(typ)
		list = append(list, ev)
	}
	return list, wrap("list events", rows.Err())
}

// DeleteEventsBefore deletes up to limit events older than before and
// returns how many (the retention janitor loops in batches).
func (s *Store) DeleteEventsBefore(ctx context.Context, before time.Time, limit int) (int64, error) {
	n, err := affected(s.write.ExecContext(ctx, `
		DELETE FROM auth_events WHERE id IN (
			SELECT id FROM auth_events WHERE time < ?1 ORDER BY time LIMIT ?2)`, micros(before), limit))
	return n, wrap("delete old events", err)
}
