package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// change runs f, the statements of one change, and writes the event that
// ctx carries for it (auth.Recording) in the same transaction; without an
// event f runs on the pool as it is, and costs no transaction.
func (s *Store) change(ctx context.Context, f func(q Querier) error) error {
	ev, ok := auth.RecordedEvent(ctx)
	if !ok {
		return f(s.pool)
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := f(tx); err != nil {
			return err
		}
		return insertEvent(ctx, tx, ev)
	})
}

// record writes the event ctx carries, if any, on q: for a change that
// already runs in a transaction of its own.
func record(ctx context.Context, q Querier) error {
	if ev, ok := auth.RecordedEvent(ctx); ok {
		return insertEvent(ctx, q, ev)
	}
	return nil
}

// recordFor writes the event ctx carries, if any, for one account of a
// change that touches several (an import).
func recordFor(ctx context.Context, q Querier, deviceID, username, reason string) error {
	ev, ok := auth.RecordedEvent(ctx)
	if !ok {
		return nil
	}
	ev.DeviceID, ev.Username, ev.Reason = deviceID, username, reason
	return insertEvent(ctx, q, ev)
}

func insertEvent(ctx context.Context, q Querier, ev auth.Event) error {
	_, err := q.Exec(ctx, `
		INSERT INTO auth_events (time, type, device_id, username, session_id, actor, reason, client_addr)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		ev.Time, string(ev.Type), ev.DeviceID, ev.Username, ev.SessionID, ev.By, ev.Reason, ev.ClientAddr)
	return err
}

// RecordEvent writes an event that records no change of the store's (a
// login refused for a wrong PIN).
func (s *Store) RecordEvent(ctx context.Context, ev auth.Event) error {
	return wrap("record event", insertEvent(ctx, s.pool, ev))
}

// ListEvents lists events oldest first.
func (s *Store) ListEvents(ctx context.Context, f auth.EventFilter) ([]auth.Event, error) {
	limit := int64(f.Limit)
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.pool.Query(ctx, `
		SELECT id, time, type, device_id, username, session_id, actor, reason, client_addr
		FROM auth_events
		WHERE ($1 = '' OR device_id = $1) AND ($2 = '' OR username = $2) AND ($3 = '' OR type = $3) AND time >= $4
		ORDER BY time, id
		LIMIT CASE WHEN $5::bigint < 0 THEN NULL ELSE $5::bigint END`,
		f.DeviceID, f.Username, string(f.Type), f.Since, limit)
	if err != nil {
		return nil, wrap("list events", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (auth.Event, error) {
		var ev auth.Event
		var typ string
		err := row.Scan(&ev.ID, &ev.Time, &typ, &ev.DeviceID, &ev.Username, &ev.SessionID, &ev.By, &ev.Reason, &ev.ClientAddr)
		ev.Type, ev.Time = auth.EventType(typ), ev.Time.UTC()
		return ev, err
	})
	return list, wrap("list events", err)
}

// DeleteEventsBefore deletes up to limit events older than before and
// returns how many (the retention janitor loops in batches).
func (s *Store) DeleteEventsBefore(ctx context.Context, before time.Time, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		DELETE FROM auth_events WHERE id IN (
			SELECT id FROM auth_events WHERE time < $1 ORDER BY time LIMIT $2)`, before, limit)
	if err != nil {
		return 0, wrap("delete old events", err)
	}
	return tag.RowsAffected(), nil
}
