// Package testkit holds what the tests of both programs share: a PostgreSQL
// schema (or role) of each test's own, a PgBouncer in front of the test
// server, and a clock that tests move by hand. Only tests import it; the
// programs themselves share no code.
package testkit

// Each test gets a PostgreSQL schema of its own, so that tests that commit
// can run in parallel against one real server without seeing each other's
// rows, and without a shared database being truncated between tests.
//
// The server is found through TEST_DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable). A server that
// cannot be reached fails the test: a skipped database test looks like a
// passing one.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultURL is used when TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// connectTimeout bounds each attempt to reach the server, so that an
// unreachable server fails the test quickly instead of hanging it.
const connectTimeout = 10 * time.Second

// URL creates a fresh, empty schema for t and returns a connection URL whose
// search_path is that schema (pgx sends unknown URL parameters to the server
// as run-time parameters). The schema is dropped when t ends.
func URL(t testing.TB) string {
	t.Helper()
	base := baseURL(t)
	schema := "t_" + randomHex(t)

	if err := serverExec(base, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("testkit: create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		if err := serverExec(base, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("testkit: drop schema %s: %v", schema, err)
		}
	})

	q := base.Query()
	q.Set("search_path", schema)
	base.RawQuery = q.Encode()
	return base.String()
}

// Pool returns a pool on a fresh schema of t's own (see URL). It is closed
// before the schema is dropped.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(URL(t))
	if err != nil {
		t.Fatalf("testkit: parse pool config: %v", err)
	}
	// Many tests hold a pool at once; a few connections each keep the total
	// below the server's max_connections.
	cfg.MaxConns = 4
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("testkit: open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// BaseURL returns the server the tests use: TEST_DATABASE_URL, or
// DefaultURL.
func BaseURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

func baseURL(t testing.TB) *url.URL {
	t.Helper()
	raw := BaseURL()
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("testkit: TEST_DATABASE_URL must be a postgres:// URL, got %q", raw)
	}
	return u
}

// serverExec runs statements, in order, on the test server itself
// (creating or dropping a test's schema or role), on a connection of its
// own, within connectTimeout. It stops at the first that fails and names
// it.
func serverExec(base *url.URL, sqls ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, base.String())
	if err != nil {
		return fmt.Errorf("cannot reach PostgreSQL at TEST_DATABASE_URL (%s): %w", base.Redacted(), err)
	}
	defer conn.Close(context.Background())
	for _, sql := range sqls {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	return nil
}

func randomHex(t testing.TB) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testkit: random schema name: %v", err)
	}
	return hex.EncodeToString(b)
}
