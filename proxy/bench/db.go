package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
)

// database is the bench's own schema on the test server: every process of
// a run selects it by search_path, and it is dropped at the end.
type database struct {
	base   string // TEST_DATABASE_URL
	schema string
	url    string // base with search_path=schema
	conn   *pgx.Conn
}

func createSchema(ctx context.Context, base string) (*database, error) {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	d := &database{base: base, schema: "bench_" + hex.EncodeToString(b)}
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("TEST_DATABASE_URL: %w", err)
	}
	q := u.Query()
	q.Set("search_path", d.schema)
	u.RawQuery = q.Encode()
	d.url = u.String()

	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return nil, fmt.Errorf("cannot reach PostgreSQL at TEST_DATABASE_URL (run make bench, which starts it): %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+d.schema); err != nil {
		return nil, fmt.Errorf("create schema: %w", err)
	}
	if d.conn, err = pgx.Connect(ctx, d.url); err != nil {
		_ = d.drop()
		return nil, fmt.Errorf("connect to schema %s: %w", d.schema, err)
	}
	return d, nil
}

// drop removes the schema with everything in it. It runs at the end of
// every run, interrupted or failed ones too, so it does not use the run's
// context.
func (d *database) drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if d.conn != nil {
		_ = d.conn.Close(ctx)
	}
	conn, err := pgx.Connect(ctx, d.base)
	if err != nil {
		return fmt.Errorf("drop schema %s: %w", d.schema, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+d.schema+" CASCADE"); err != nil {
		return fmt.Errorf("drop schema %s: %w", d.schema, err)
	}
	return nil
}

func (d *database) version(ctx context.Context) string {
	var v string
	if err := d.conn.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil {
		return "unknown"
	}
	return v
}

func (d *database) userID(ctx context.Context, a account) (string, error) {
	var id string
	err := d.conn.QueryRow(ctx, `SELECT id::text FROM users WHERE device_id = $1 AND username = $2`, a.device, a.username).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("find user %s/%s: %w", a.device, a.username, err)
	}
	return id, nil
}

func (d *database) countSessions(ctx context.Context) (int64, error) {
	var n int64
	if err := d.conn.QueryRow(ctx, `SELECT count(*) FROM sessions`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count sessions: %w", err)
	}
	return n, nil
}

// insertSessions inserts n sessions of the user in one statement: ids of
// 32 hex characters like the proxy's, live until expires (or, with
// expiredEvery > 0, every expiredEvery-th one expired an hour ago). It
// returns the ids when returnIDs is set.
func (d *database) insertSessions(ctx context.Context, u user, n int, expires time.Time, expiredEvery int, returnIDs bool) ([]string, error) {
	sql := `INSERT INTO sessions (id, device_id, user_id, is_admin, generation, created_at, expires_at)
		SELECT md5(random()::text || i::text), $1, $2::uuid, false, 0, now(),
			CASE WHEN $4 > 0 AND i % $4 = 0 THEN now() - interval '1 hour' ELSE $3 END
		FROM generate_series(1, $5::int) AS i`
	if !returnIDs {
		if _, err := d.conn.Exec(ctx, sql, u.device, u.id, expires, expiredEvery, n); err != nil {
			return nil, fmt.Errorf("insert %d sessions: %w", n, err)
		}
		return nil, nil
	}
	rows, err := d.conn.Query(ctx, sql+" RETURNING id", u.device, u.id, expires, expiredEvery, n)
	if err != nil {
		return nil, fmt.Errorf("insert %d sessions: %w", n, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("insert %d sessions: %w", n, err)
	}
	return ids, nil
}

// liveSession is what a token needs of a session.
type liveSession struct {
	id, deviceID, userID string
	expiresAt            time.Time
}

// randomLiveSessions picks n live, unrefreshed sessions at random.
func (d *database) randomLiveSessions(ctx context.Context, n int) ([]liveSession, error) {
	rows, err := d.conn.Query(ctx, `
		SELECT id, device_id, user_id::text, expires_at FROM sessions
		WHERE revoked_at IS NULL AND generation = 0 AND user_id IS NOT NULL
			AND expires_at > now() + interval '10 minutes'
		ORDER BY random() LIMIT $1`, n)
	if err != nil {
		return nil, fmt.Errorf("pick live sessions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (liveSession, error) {
		var s liveSession
		return s, r.Scan(&s.id, &s.deviceID, &s.userID, &s.expiresAt)
	})
	if err != nil {
		return nil, fmt.Errorf("pick live sessions: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("pick live sessions: none found")
	}
	return out, nil
}
