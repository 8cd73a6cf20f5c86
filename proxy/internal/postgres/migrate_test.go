package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authsidecar/authsidecar/internal/testkit"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
	"github.com/authsidecar/authsidecar/proxy/internal/schema"
)

// migrationCount returns how many migrations m embeds (at least the two
// this test knows of).
func migrationCount(t *testing.T, m *schema.Migrator) int {
	t.Helper()
	st, err := m.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st) < 2 {
		t.Fatalf("Status lists %d migrations, want at least 2", len(st))
	}
	return len(st)
}

// leftovers counts what the migrations made that is still in the pool's
// schema: relations and functions other than the version table's own.
func leftovers(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	err := pool.QueryRow(context.Background(), `
		SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
		        WHERE ns.nspname = current_schema() AND c.relname NOT LIKE 'authsidecar_proxy_migrations%')
		     + (SELECT count(*) FROM pg_proc p JOIN pg_namespace ns ON ns.oid = p.pronamespace
		        WHERE ns.nspname = current_schema())`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func newMigrator(t *testing.T, pool *pgxpool.Pool) *schema.Migrator {
	t.Helper()
	m, err := postgres.NewMigrator(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// tableExists reports whether name is a table of the pool's schema.
func tableExists(t *testing.T, pool *pgxpool.Pool, name string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(context.Background(), `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func appliedCount(t *testing.T, m *schema.Migrator) int {
	t.Helper()
	st, err := m.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i, s := range st {
		// Oldest first, from 1. A version may be missing while the
		// branch that adds it is not merged yet.
		if (i == 0 && s.Version != 1) || (i > 0 && s.Version <= st[i-1].Version) {
			t.Fatalf("Status[%d].Version = %d, after %v (want oldest first, from 1)", i, s.Version, st[:i])
		}
		if s.Name == "" {
			t.Fatalf("Status[%d] has no name", i)
		}
		if s.Applied {
			if s.AppliedAt.IsZero() {
				t.Fatalf("Status[%d] applied without a time", i)
			}
			n++
		}
	}
	return n
}

func isCurrent(t *testing.T, m *schema.Migrator) bool {
	t.Helper()
	ok, err := m.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestMigrationsUpDownUpRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testkit.Pool(t)
	m := newMigrator(t, pool)
	wantMigrations := migrationCount(t, m)

	if isCurrent(t, m) {
		t.Fatal("Current on an empty schema: true")
	}
	if n := appliedCount(t, m); n != 0 {
		t.Fatalf("empty schema: %d applied", n)
	}

	n, err := m.Up(ctx)
	if err != nil || n != wantMigrations {
		t.Fatalf("Up = %d, %v; want %d", n, err, wantMigrations)
	}
	if !isCurrent(t, m) {
		t.Fatal("Current after Up: false")
	}
	if n := appliedCount(t, m); n != wantMigrations {
		t.Fatalf("after Up: %d applied", n)
	}
	for _, table := range []string{"devices", "users", "sessions", "signing_keys", "login_failures"} {
		if !tableExists(t, pool, table) {
			t.Fatalf("after Up: table %s missing", table)
		}
	}
	if n, err := m.Up(ctx); err != nil || n != 0 {
		t.Fatalf("second Up = %d, %v; want 0, nil", n, err)
	}

	// Down rolls back one migration at a time, newest first.
	versions := migrationVersions(t, m)
	for i := len(versions) - 1; i >= 0; i-- {
		v := versions[i]
		got, err := m.Down(ctx)
		if err != nil || got != v {
			t.Fatalf("Down = %d, %v; want %d", got, err, v)
		}
		if isCurrent(t, m) {
			t.Fatalf("Current after rolling back %d: true", v)
		}
		if n := appliedCount(t, m); n != i {
			t.Fatalf("after rolling back %d: %d applied, want %d", v, n, i)
		}
	}
	if got, err := m.Down(ctx); err != nil || got != 0 {
		t.Fatalf("Down with nothing applied = %d, %v; want 0, nil", got, err)
	}
	// Every Down undid its Up completely.
	if n := leftovers(t, pool); n != 0 {
		t.Fatalf("after every Down: %d relations or functions left in the schema", n)
	}

	if n, err := m.Up(ctx); err != nil || n != wantMigrations {
		t.Fatalf("Up after Down = %d, %v; want %d", n, err, wantMigrations)
	}
	if !isCurrent(t, m) {
		t.Fatal("Current after the round trip: false")
	}
	// The schema works after the round trip.
	s := postgres.NewStore(pool)
	if _, err := s.AddUser(ctx, "dev", "user", "hash", false); err != nil {
		t.Fatalf("AddUser after the round trip: %v", err)
	}
}

// Several replicas start at once with AUTO_MIGRATE: the advisory lock lets
// one apply while the other waits and then finds nothing to do.
func TestMigrationsConcurrentUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := testkit.URL(t)
	pools := []*pgxpool.Pool{openPool(t, u), openPool(t, u)}
	migrators := []*schema.Migrator{newMigrator(t, pools[0]), newMigrator(t, pools[1])}
	wantMigrations := migrationCount(t, migrators[0])

	applied := make([]int, len(migrators))
	errs := make([]error, len(migrators))
	var wg sync.WaitGroup
	for i, m := range migrators {
		wg.Go(func() { applied[i], errs[i] = m.Up(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrator %d: %v", i, err)
		}
	}
	if applied[0]+applied[1] != wantMigrations {
		t.Fatalf("applied %d and %d migrations; want %d in all", applied[0], applied[1], wantMigrations)
	}
	for i, m := range migrators {
		if !isCurrent(t, m) {
			t.Fatalf("migrator %d: not current", i)
		}
	}
}

// migrationVersions lists the versions of every migration m embeds,
// oldest first.
func migrationVersions(t *testing.T, m *schema.Migrator) []int64 {
	t.Helper()
	st, err := m.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, s := range st {
		out = append(out, s.Version)
	}
	return out
}
