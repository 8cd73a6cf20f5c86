package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/schema"
	"github.com/authsidecar/authsidecar/proxy/internal/storetest"
)

var t0 = storetest.T0

func newMigrator(t *testing.T, s *Store) *schema.Migrator {
	t.Helper()
	m, err := NewMigrator(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func isCurrent(t *testing.T, m *schema.Migrator) bool {
	t.Helper()
	ok, err := m.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// appliedCount checks Status (every migration, oldest first, numbered
// from 1) and returns how many are applied.
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

// objects lists what the migrations made: tables, indexes and triggers,
// other than the version table's own and SQLite's.
func objects(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.read.Query(`SELECT type || ' ' || name FROM sqlite_schema
		WHERE name NOT LIKE 'authsidecar_proxy_migrations%' AND name NOT LIKE 'sqlite_%' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err != nil {
			t.Fatal(err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// migrationFiles lists the .sql files of dir.
func migrationFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sql") {
			names = append(names, e.Name())
		}
	}
	return names
}

// Both stores number their migrations alike, so that `proxy migrate
// status` reads the same and a version means the same change on both.
func TestMigrationsMatchPostgres(t *testing.T) {
	t.Parallel()
	pg := migrationFiles(t, filepath.Join("..", "postgres", "migrations"))
	lite := migrationFiles(t, "migrations")
	if len(pg) == 0 || !slices.Equal(pg, lite) {
		t.Fatalf("migrations differ:\n postgres %v\n sqlite   %v", pg, lite)
	}
}

func TestMigrationsUpDownUpRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	m := newMigrator(t, s)
	st, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := len(st)
	if want < 3 {
		t.Fatalf("Status lists %d migrations, want at least 3", want)
	}

	if isCurrent(t, m) {
		t.Fatal("Current on an empty database: true")
	}
	if n := appliedCount(t, m); n != 0 {
		t.Fatalf("empty database: %d applied", n)
	}
	n, err := m.Up(ctx)
	if err != nil || n != want {
		t.Fatalf("Up = %d, %v; want %d", n, err, want)
	}
	if !isCurrent(t, m) {
		t.Fatal("Current after Up: false")
	}
	if n := appliedCount(t, m); n != want {
		t.Fatalf("after Up: %d applied", n)
	}
	made := objects(t, s)
	for _, table := range []string{"devices", "users", "sessions", "signing_keys", "login_failures"} {
		if !slices.Contains(made, "table "+table) {
			t.Fatalf("after Up: table %s missing (have %v)", table, made)
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
	if left := objects(t, s); len(left) != 0 {
		t.Fatalf("after every Down, left: %v", left)
	}

	if n, err := m.Up(ctx); err != nil || n != want {
		t.Fatalf("Up after Down = %d, %v; want %d", n, err, want)
	}
	if !isCurrent(t, m) {
		t.Fatal("Current after the round trip: false")
	}
	if got := objects(t, s); !slices.Equal(got, made) {
		t.Fatalf("after the round trip: %v, want %v", got, made)
	}
	// The schema works after the round trip.
	if _, err := s.AddUser(ctx, "dev", "user", "hash", false); err != nil {
		t.Fatalf("AddUser after the round trip: %v", err)
	}
}

// `proxy migrate up` while `proxy serve` starts with AUTO_MIGRATE: the lock
// file lets one apply while the other waits and then finds nothing to do.
func TestMigrationsConcurrentUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	stores := []*Store{openStore(t, dir), openStore(t, dir), openStore(t, dir)}
	var migrators []*schema.Migrator
	for _, s := range stores {
		migrators = append(migrators, newMigrator(t, s))
	}
	st, err := migrators[0].Status(ctx)
	if err != nil {
		t.Fatal(err)
	}

	applied := make([]int, len(migrators))
	errs := make([]error, len(migrators))
	var wg sync.WaitGroup
	for i, m := range migrators {
		wg.Go(func() { applied[i], errs[i] = m.Up(ctx) })
	}
	wg.Wait()
	total := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrator %d: %v", i, err)
		}
		total += applied[i]
	}
	if total != len(st) {
		t.Fatalf("applied %v migrations; want %d in all", applied, len(st))
	}
	for i, m := range migrators {
		if !isCurrent(t, m) {
			t.Fatalf("migrator %d: not current", i)
		}
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// The database holds password hashes and the signing key: nobody but the
// proxy's user may read it, nor list the directory.
func TestOpenMakesPrivateFiles(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data", "proxy")
	s := openStore(t, dir)
	migrate(t, s) // writes, so that the -wal and -shm files exist
	if _, err := s.SigningKeyPEM(context.Background(), func() (string, []byte, error) {
		return "k", []byte("secret"), nil
	}); err != nil {
		t.Fatal(err)
	}
	release, ok, err := s.TryExclusive(context.Background(), "janitor")
	if err != nil || !ok {
		t.Fatalf("TryExclusive = %v, %v", ok, err)
	}
	defer release()

	if got := mode(t, dir); got != 0o700 {
		t.Errorf("data directory mode %o, want 700", got)
	}
	if got := mode(t, filepath.Dir(dir)); got != 0o700 {
		t.Errorf("its parent, created too: mode %o, want 700", got)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
		if got := mode(t, f); got != 0o600 {
			t.Errorf("%s: mode %o, want 600", filepath.Base(f), got)
		}
	}
	for _, want := range []string{FileName, FileName + "-wal", FileName + "-shm", FileName + ".exclusive-janitor.lock"} {
		if !slices.Contains(names, want) {
			t.Errorf("no %s in the data directory (%v)", want, names)
		}
	}
	if s.Path() != filepath.Join(dir, FileName) {
		t.Errorf("Path() = %s", s.Path())
	}
}

// An existing data directory (a mounted volume) is used as it is.
func TestOpenExistingDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	openStore(t, dir)
	if got := mode(t, dir); got != 0o750 {
		t.Errorf("existing directory mode changed to %o", got)
	}
	if got := mode(t, filepath.Join(dir, FileName)); got != 0o600 {
		t.Errorf("database file mode %o, want 600", got)
	}
}

func TestOpenFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, err := Open(ctx, ""); err == nil {
		t.Error("Open(\"\"): no error")
	}
	// The data directory is a file.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, file); err == nil {
		t.Error("Open of a file as the data directory: no error")
	}
	// The database file is not a database.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(strings.Repeat("not a database ", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(ctx, dir); err == nil {
		_ = s.Close()
		t.Error("Open of a file that is not a database: no error")
	}
}

// A path with characters that mean something in a URI still names the
// file.
func TestOpenPathWithURICharacters(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "a dir?x=1#frag%20")
	s := openStore(t, dir)
	migrate(t, s)
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Fatal(err)
	}
	addUser := func() error { _, err := s.AddUser(context.Background(), "dev", "1111", "h", false); return err }
	if err := addUser(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenSettings(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	for _, c := range []struct {
		db     string
		pragma string
		want   string
	}{
		{"write", "journal_mode", "wal"},
		{"read", "journal_mode", "wal"},
		{"write", "foreign_keys", "1"},
		{"read", "foreign_keys", "1"},
		{"write", "busy_timeout", "10000"},
		{"read", "busy_timeout", "10000"},
		{"write", "synchronous", "2"},
		{"read", "query_only", "1"},
		{"write", "query_only", "0"},
	} {
		db := s.write
		if c.db == "read" {
			db = s.read
		}
		var got string
		if err := db.QueryRowContext(ctx, "PRAGMA "+c.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s connection: %s = %s, want %s", c.db, c.pragma, got, c.want)
		}
	}
}

// Sessions, users, lockouts and the key survive a restart.
func TestReopenKeepsEverything(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	migrate(t, s)
	u, err := s.AddUser(ctx, "dev", "1111", "hash", true)
	if err != nil {
		t.Fatal(err)
	}
	sess := auth.Session{ID: "s1", DeviceID: "dev", UserID: u.ID, IsAdmin: true, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	key, err := s.SigningKeyPEM(ctx, func() (string, []byte, error) { return "k", []byte("the key"), nil })
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, _, err := s.ReserveLoginAttempt(ctx, "dev", "1111", t0); err != nil {
			t.Fatal(err)
		}
	}
	until, err := s.LockAccount(ctx, "dev", "1111", t0, time.Minute, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir)
	if !isCurrent(t, newMigrator(t, s)) {
		t.Fatal("schema not current after reopening")
	}
	got, err := s.Session(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != u.ID || got.Username != "1111" || !got.IsAdmin || !got.ExpiresAt.Equal(sess.ExpiresAt) || !got.CreatedAt.Equal(t0) {
		t.Fatalf("session after reopening: %+v", got)
	}
	if gotU, hash, err := s.UserCredentials(ctx, "dev", "1111"); err != nil || hash != "hash" || gotU.ID != u.ID {
		t.Fatalf("user after reopening: %+v, %q, %v", gotU, hash, err)
	}
	again, err := s.SigningKeyPEM(ctx, func() (string, []byte, error) { return "k2", []byte("another key"), nil })
	if err != nil || string(again) != string(key) {
		t.Fatalf("key after reopening: %q, %v; want %q", again, err, key)
	}
	if n, got, err := s.ReserveLoginAttempt(ctx, "dev", "1111", t0); err != nil || n != 0 || !got.Equal(until) {
		t.Fatalf("lockout after reopening: attempt %d, until %v, %v; want 0, %v", n, got, err, until)
	}
}

// A closed store answers nothing, and says so in the one way callers fail
// closed on.
func TestClosedStoreIsUnavailable(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	storetest.CheckUnavailable(t, s)
	if _, err := NewMigrator(context.Background(), s); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("NewMigrator: %v, want ErrUnavailable", err)
	}
}

// Times are INTEGER unix microseconds: what operators query.
func TestTimesAreUnixMicroseconds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	if _, err := s.AddUser(ctx, "dev", "1111", "h", false); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.FixedZone("CET", 3600))
	if err := s.CreateSession(ctx, auth.Session{ID: "s", DeviceID: "dev", CreatedAt: at, ExpiresAt: at.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var typ string
	var expires int64
	if err := s.read.QueryRowContext(ctx, `SELECT typeof(expires_at), expires_at FROM sessions`).Scan(&typ, &expires); err != nil {
		t.Fatal(err)
	}
	if typ != "integer" || expires != at.Add(time.Hour).UnixMicro() {
		t.Fatalf("expires_at is %s %d, want integer %d", typ, expires, at.Add(time.Hour).UnixMicro())
	}
	got, err := s.Session(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	// Truncated to the microsecond (as PostgreSQL keeps it), in UTC.
	if want := at.Truncate(time.Microsecond); !got.CreatedAt.Equal(want) || got.CreatedAt.Location() != time.UTC {
		t.Fatalf("created %v, want %v in UTC", got.CreatedAt, want)
	}
}

// Two handles on one file — as the server and an operator's command are —
// write through SQLite's own locking: BEGIN IMMEDIATE and the busy timeout
// serialize them without SQLITE_BUSY, and the lockout count stays atomic.
func TestWritesFromTwoHandles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	a := openStore(t, dir)
	migrate(t, a)
	b := openStore(t, dir)
	if _, err := a.AddUser(ctx, "dev", "1111", "h", false); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateSession(ctx, auth.Session{ID: "s", DeviceID: "dev", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	const n = 24
	got := make([]int, n)
	errs := make([]error, n)
	refreshErrs := make([]error, n)
	keys := make([]string, n)
	locks := make([]time.Time, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		s := []*Store{a, b}[i%2]
		wg.Go(func() {
			<-start
			// Transactions that write first...
			got[i], _, errs[i] = s.ReserveLoginAttempt(ctx, "dev", "1111", t0)
			if errs[i] != nil {
				return
			}
			now := t0.Add(time.Minute)
			_, refreshErrs[i] = s.RefreshSession(ctx, "s", 0, now, now.Add(time.Hour), now)
			// ...and those that read first, then write: in a deferred
			// transaction these would fail with SQLITE_BUSY.
			var key []byte
			key, errs[i] = s.SigningKeyPEM(ctx, func() (string, []byte, error) {
				id := newUUID()
				return id, []byte(id), nil
			})
			keys[i] = string(key)
			if errs[i] != nil {
				return
			}
			locks[i], errs[i] = s.LockAccount(ctx, "dev", "other", t0, time.Minute, time.Hour)
		})
	}
	if _, _, err := a.ReserveLoginAttempt(ctx, "dev", "other", t0); err != nil {
		t.Fatal(err)
	}
	close(start)
	wg.Wait()
	wins := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		switch err := refreshErrs[i]; {
		case err == nil:
			wins++
		case !errors.Is(err, auth.ErrInvalidToken):
			t.Fatalf("refresh: %v", err)
		}
		if keys[i] != keys[0] || !locks[i].Equal(t0.Add(time.Minute)) {
			t.Fatalf("caller %d: key %q, locked until %v; caller 0: %q, %v", i, keys[i], locks[i], keys[0], t0.Add(time.Minute))
		}
	}
	slices.Sort(got)
	for i, v := range got {
		if v != i+1 {
			t.Fatalf("attempt numbers %v; want 1..%d each exactly once", got, n)
		}
	}
	if wins != 1 {
		t.Fatalf("%d refreshes won, want exactly 1", wins)
	}
}

// A write transaction takes SQLite's write lock when it begins, not at its
// first write: a transaction that read first and then found the lock taken
// would fail with SQLITE_BUSY at once, whatever the busy timeout.
func TestWriteTransactionsBeginImmediate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()

	other, err := sql.Open("sqlite", dsn(s.path, "_pragma=busy_timeout(0)"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	_, err = other.ExecContext(ctx, "BEGIN IMMEDIATE")
	var e *msqlite.Error
	if !errors.As(err, &e) || e.Code()&0xff != sqlite3.SQLITE_BUSY {
		if err == nil {
			_, _ = other.ExecContext(ctx, "ROLLBACK")
		}
		t.Fatalf("another writer during a write transaction that has not written yet: %v; want SQLITE_BUSY", err)
	}
}

// TryExclusive holds across stores of one file in this process, and not
// across files.
func TestTryExclusiveAcrossStores(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	a, b := openStore(t, dir), openStore(t, dir)

	release, ok, err := a.TryExclusive(ctx, "janitor")
	if err != nil || !ok {
		t.Fatalf("first = %v, %v; want the lock", ok, err)
	}
	if _, ok, err := b.TryExclusive(ctx, "janitor"); err != nil || ok {
		t.Fatalf("another store on the same file while held = %v, %v; want not ok", ok, err)
	}
	// Another database is another lock.
	c := openStore(t, t.TempDir())
	rc, ok, err := c.TryExclusive(ctx, "janitor")
	if err != nil || !ok {
		t.Fatalf("another database = %v, %v; want the lock", ok, err)
	}
	rc()
	// Names that cannot be file names are locks too, each its own.
	odd, ok, err := a.TryExclusive(ctx, "../../etc/passwd janitor")
	if err != nil || !ok {
		t.Fatalf("odd name = %v, %v; want the lock", ok, err)
	}
	if _, ok, _ := b.TryExclusive(ctx, "../../etc/passwd janitor"); ok {
		t.Fatal("odd name taken twice")
	}
	odd()

	release()
	release() // twice: harmless
	rb, ok, err := b.TryExclusive(ctx, "janitor")
	if err != nil || !ok {
		t.Fatalf("after release = %v, %v; want the lock", ok, err)
	}
	if _, ok, _ := a.TryExclusive(ctx, "janitor"); ok {
		t.Fatal("the old holder took it again while the new one holds it")
	}
	rb()
}

func TestLockoutDuration(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		base, maxLock time.Duration
		lockouts      int64
		want          time.Duration
	}{
		{time.Minute, time.Hour, 0, time.Minute},
		{time.Minute, time.Hour, 1, 2 * time.Minute},
		{time.Minute, time.Hour, 5, 32 * time.Minute},
		{time.Minute, time.Hour, 6, time.Hour},
		{time.Minute, time.Hour, 1000, time.Hour},
		{2 * time.Hour, time.Hour, 0, time.Hour}, // a base over the cap is the cap
		// Doubling stops at 30 (as in PostgreSQL) and never overflows.
		{time.Second, math.MaxInt64, 1000, time.Second << 30},
		{24 * time.Hour, math.MaxInt64, 1000, math.MaxInt64},
		{math.MaxInt64 / 3, math.MaxInt64, 1, math.MaxInt64 / 3 * 2},
		{math.MaxInt64 / 3, math.MaxInt64, 2, math.MaxInt64},
	} {
		if got := lockoutDuration(c.base, c.maxLock, c.lockouts); got != c.want {
			t.Errorf("lockoutDuration(%v, %v, %d) = %v, want %v", c.base, c.maxLock, c.lockouts, got, c.want)
		}
	}
}

func TestNewUUID(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		id := newUUID()
		if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[14] != '4' || id[18] != '-' || id[23] != '-' ||
			!strings.ContainsRune("89ab", rune(id[19])) || strings.ToLower(id) != id {
			t.Fatalf("newUUID() = %q, not a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("newUUID() repeated %q", id)
		}
		seen[id] = true
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
