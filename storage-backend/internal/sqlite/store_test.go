package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/storage-backend/internal/record"
	"github.com/authsidecar/authsidecar/storage-backend/internal/schema"
	"github.com/authsidecar/authsidecar/storage-backend/internal/sqlite"
	"github.com/authsidecar/authsidecar/storage-backend/internal/storetest"
)

// openDB opens a database file of the test's own, not migrated.
func openDB(t *testing.T) (*sql.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), sqlite.FileName)
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, path
}

// newStore returns a store on a migrated database of the test's own.
func newStore(t *testing.T, now func() time.Time) (*sqlite.Store, *sql.DB) {
	t.Helper()
	db, _ := openDB(t)
	if _, err := sqlite.Migrate(context.Background(), db, schema.Up); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	s := sqlite.NewStore(db)
	s.Now = now
	return s, db
}

// TestStore runs the suite every store passes (package storetest).
func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, now func() time.Time) record.Store {
		s, _ := newStore(t, now)
		return s
	})
}

// The embedded store keeps JSON as compact text: white space goes, key
// order, duplicate keys and the spelling of numbers and escapes stay. The
// suite compares JSON by meaning; this pins the bytes SQLite returns.
func TestStoredForm(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, db := newStore(t, func() time.Time { return time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC) })

	for in, want := range map[string]string{
		` [ 1 , 2 , 3 ] `:                        `[1,2,3]`,
		"{\n\t\"nested\": {\"a\": [1, null]}\n}": `{"nested":{"a":[1,null]}}`,
		`{"bb": 1, "a": 2}`:                      `{"bb":1,"a":2}`,
		`{"a": 1, "a": 2}`:                       `{"a":1,"a":2}`,
		`1E+2`:                                   `1E+2`,
		`"\u00e9 <&> \" \\ "`:                    `"\u00e9 <&> \" \\ "`,
	} {
		if _, _, err := s.Put(ctx, record.Record{DeviceID: "dev", Key: "k", Data: json.RawMessage(in), Meta: json.RawMessage(`{ "m" : 1 }`)}); err != nil {
			t.Fatalf("Put(%s): %v", in, err)
		}
		got, err := s.Get(ctx, "dev", "k")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if string(got.Data) != want || string(got.Meta) != `{"m":1}` {
			t.Errorf("Put(%s): Data %s, Meta %s; want %s, {\"m\":1}", in, got.Data, got.Meta, want)
		}
	}

	// Times are text an operator can read and sort.
	var created, updated string
	if err := db.QueryRow(`SELECT created_at, updated_at FROM storage_records`).Scan(&created, &updated); err != nil {
		t.Fatal(err)
	}
	if created != "2024-05-01T12:00:00.123456Z" || updated != created {
		t.Errorf("stored times %q, %q; want 2024-05-01T12:00:00.123456Z", created, updated)
	}
}

// Records outlive the process: a store opened again on the file finds them.
func TestReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, sqlite.FileName)

	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Migrate(ctx, db, schema.Up); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sqlite.NewStore(db).Put(ctx, record.Record{DeviceID: "dev", Key: "k", Data: json.RawMessage(`{"kept": true}`)}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := sqlite.Ready(ctx, db); err != nil {
		t.Fatalf("Ready after reopening: %v", err)
	}
	got, err := sqlite.NewStore(db).Get(ctx, "dev", "k")
	if err != nil || string(got.Data) != `{"kept":true}` {
		t.Fatalf("Get after reopening = %s, %v", got.Data, err)
	}
}

// The devices' records are for the owner only: the database file and the
// files SQLite keeps beside it are created 0600, and in WAL mode.
func TestFileModeAndJournal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, db := newStore(t, time.Now)
	if _, _, err := s.Put(ctx, record.Record{DeviceID: "dev", Key: "k", Data: json.RawMessage(`1`)}); err != nil {
		t.Fatal(err)
	}
	var file string
	if err := db.QueryRow(`SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&file); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{file, file + "-wal", file + "-shm"} {
		info, err := os.Stat(name)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(name), err)
			continue
		}
		if mode := info.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(name), mode)
		}
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

// A path with characters that mean something in a URI is still a path.
func TestOpenOddPath(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "a?b#c%20d")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, sqlite.FileName)
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	defer db.Close()
	if _, err := sqlite.Migrate(context.Background(), db, schema.Up); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at %q: %v", path, err)
	}
}

// A file that is not a database is refused at Open, not at the first request.
func TestOpenNotADatabase(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), sqlite.FileName)
	if err := os.WriteFile(path, []byte("this is not an SQLite database, but it is long enough to have a header of 100 bytes ........"), 0o600); err != nil {
		t.Fatal(err)
	}
	if db, err := sqlite.Open(context.Background(), path); err == nil {
		db.Close()
		t.Fatal("Open succeeded on a file that is not a database")
	}
}

// Two pools on one file, as when a migrate command or a second process runs
// beside the server: writes wait for each other (busy_timeout, immediate
// transactions) instead of failing, and one put creates.
func TestTwoPoolsOnOneFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	first, path := openDB(t)
	if _, err := sqlite.Migrate(ctx, first, schema.Up); err != nil {
		t.Fatal(err)
	}
	second, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	stores := []*sqlite.Store{sqlite.NewStore(first), sqlite.NewStore(second)}

	const n = 16
	var wg sync.WaitGroup
	created := make(chan bool, n)
	for i := range n {
		wg.Go(func() {
			_, c, err := stores[i%2].Put(ctx, record.Record{DeviceID: "dev", Key: "race", Data: json.RawMessage(`1`)})
			if err != nil {
				t.Errorf("Put: %v", err)
			}
			created <- c
		})
	}
	wg.Wait()
	close(created)
	var creates int
	for c := range created {
		if c {
			creates++
		}
	}
	if creates != 1 {
		t.Errorf("%d of %d puts reported created, want exactly 1", creates, n)
	}
}
