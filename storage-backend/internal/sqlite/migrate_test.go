package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/authsidecar/authsidecar/storage-backend/internal/schema"
	"github.com/authsidecar/authsidecar/storage-backend/internal/sqlite"
)

func TestMigrateRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := openDB(t)

	if err := sqlite.CheckSchema(ctx, db); !errors.Is(err, schema.ErrSchemaNotCurrent) {
		t.Fatalf("CheckSchema on an empty database = %v, want ErrSchemaNotCurrent", err)
	}
	// The probe looked without writing: goose's table is not there yet.
	if tableExists(t, db, schema.VersionTable) {
		t.Fatal("CheckSchema created the version table")
	}
	if err := sqlite.Ready(ctx, db); !errors.Is(err, schema.ErrSchemaNotCurrent) {
		t.Fatalf("Ready before migrating = %v, want ErrSchemaNotCurrent", err)
	}
	assertStatus(t, db, false)

	up, err := sqlite.Migrate(ctx, db, schema.Up)
	if err != nil {
		t.Fatalf("Migrate(Up): %v", err)
	}
	if len(up) == 0 || up[0].Version != 1 || up[0].Name != "create_storage_records" {
		t.Fatalf("Migrate(Up) ran %+v, want migration 1 create_storage_records first", up)
	}
	if err := sqlite.Ready(ctx, db); err != nil {
		t.Fatalf("Ready after Up = %v, want nil", err)
	}
	assertStatus(t, db, true)

	again, err := sqlite.Migrate(ctx, db, schema.Up)
	if err != nil || len(again) != 0 {
		t.Fatalf("second Migrate(Up) = %+v, %v; want nothing to do", again, err)
	}

	for i := len(up) - 1; i >= 0; i-- {
		down, err := sqlite.Migrate(ctx, db, schema.Down)
		if err != nil {
			t.Fatalf("Migrate(Down): %v", err)
		}
		if len(down) != 1 || down[0].Version != up[i].Version {
			t.Fatalf("Migrate(Down) rolled back %+v, want version %d", down, up[i].Version)
		}
	}
	if tableExists(t, db, "storage_records") {
		t.Fatal("storage_records still exists after rolling back every migration")
	}
	if _, err := sqlite.Migrate(ctx, db, schema.Down); !errors.Is(err, schema.ErrNothingToRollBack) {
		t.Fatalf("Migrate(Down) with nothing applied = %v, want ErrNothingToRollBack", err)
	}
	if err := sqlite.CheckSchema(ctx, db); !errors.Is(err, schema.ErrSchemaNotCurrent) {
		t.Fatalf("CheckSchema after Down = %v, want ErrSchemaNotCurrent", err)
	}
	if _, err := sqlite.Migrate(ctx, db, schema.Up); err != nil {
		t.Fatalf("Migrate(Up) after Down: %v", err)
	}
	if !tableExists(t, db, "storage_records") {
		t.Fatal("storage_records missing after Up again")
	}
}

// Callers in one process (a start and a probe, or tests) take turns rather
// than both creating goose's version table.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := openDB(t)

	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			_, err := sqlite.Migrate(ctx, db, schema.Up)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate(Up): %v", err)
		}
	}
	if err := sqlite.CheckSchema(ctx, db); err != nil {
		t.Fatalf("CheckSchema = %v", err)
	}
}

// A closed database is not ready.
func TestReadyClosed(t *testing.T) {
	t.Parallel()
	db, _ := openDB(t)
	if _, err := sqlite.Migrate(context.Background(), db, schema.Up); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := sqlite.Ready(context.Background(), db); err == nil {
		t.Fatal("Ready on a closed database = nil, want an error")
	}
}

// The two stores' migrations are twins: the same versions with the same
// names, so that `migrate status` reads the same on either.
func TestMigrationsMatchPostgreSQL(t *testing.T) {
	t.Parallel()
	names := func(dir string) []string {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries {
			out = append(out, e.Name())
		}
		return out
	}
	ours, theirs := names("migrations"), names("../postgres/migrations")
	if !slices.Equal(ours, theirs) {
		t.Errorf("SQLite migrations %v, PostgreSQL migrations %v; want the same files", ours, theirs)
	}
}

func assertStatus(t *testing.T, db *sql.DB, applied bool) {
	t.Helper()
	list, err := sqlite.Status(context.Background(), db)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if len(list) == 0 {
		t.Fatal("Status lists no migrations")
	}
	for i, m := range list {
		if m.Version != int64(i+1) || m.Name == "" {
			t.Errorf("Status()[%d] = %+v, want version %d with a name", i, m, i+1)
		}
		if m.Applied != applied || m.AppliedAt.IsZero() == applied {
			t.Errorf("Status()[%d] = %+v, want applied=%v", i, m, applied)
		}
	}
}

func tableExists(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}
