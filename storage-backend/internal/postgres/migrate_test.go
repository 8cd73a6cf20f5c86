package postgres_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authsidecar/authsidecar/internal/testkit"
	"github.com/authsidecar/authsidecar/storage-backend/internal/postgres"
)

func TestMigrateRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testkit.Pool(t)

	if err := postgres.CheckSchema(ctx, pool); !errors.Is(err, postgres.ErrSchemaNotCurrent) {
		t.Fatalf("CheckSchema on an empty schema = %v, want ErrSchemaNotCurrent", err)
	}
	assertStatus(t, pool, false)

	up, err := postgres.Migrate(ctx, pool, postgres.Up)
	if err != nil {
		t.Fatalf("Migrate(Up): %v", err)
	}
	if len(up) == 0 || up[0].Version != 1 || up[0].Name != "create_storage_records" {
		t.Fatalf("Migrate(Up) ran %+v, want migration 1 create_storage_records first", up)
	}
	if err := postgres.CheckSchema(ctx, pool); err != nil {
		t.Fatalf("CheckSchema after Up = %v, want nil", err)
	}
	assertStatus(t, pool, true)

	again, err := postgres.Migrate(ctx, pool, postgres.Up)
	if err != nil || len(again) != 0 {
		t.Fatalf("second Migrate(Up) = %+v, %v; want nothing to do", again, err)
	}

	// Roll everything back, newest first, then once more than there is.
	for i := len(up) - 1; i >= 0; i-- {
		down, err := postgres.Migrate(ctx, pool, postgres.Down)
		if err != nil {
			t.Fatalf("Migrate(Down): %v", err)
		}
		if len(down) != 1 || down[0].Version != up[i].Version {
			t.Fatalf("Migrate(Down) rolled back %+v, want version %d", down, up[i].Version)
		}
	}
	if _, err := pool.Exec(ctx, "SELECT 1 FROM storage_records"); err == nil {
		t.Fatal("storage_records still exists after rolling back every migration")
	}
	if _, err := postgres.Migrate(ctx, pool, postgres.Down); !errors.Is(err, postgres.ErrNothingToRollBack) {
		t.Fatalf("Migrate(Down) with nothing applied = %v, want ErrNothingToRollBack", err)
	}
	if err := postgres.CheckSchema(ctx, pool); !errors.Is(err, postgres.ErrSchemaNotCurrent) {
		t.Fatalf("CheckSchema after Down = %v, want ErrSchemaNotCurrent", err)
	}

	if _, err := postgres.Migrate(ctx, pool, postgres.Up); err != nil {
		t.Fatalf("Migrate(Up) after Down: %v", err)
	}
	if _, err := pool.Exec(ctx, "SELECT 1 FROM storage_records"); err != nil {
		t.Fatalf("storage_records missing after Up again: %v", err)
	}
}

// Replicas starting together all run Migrate; the lock must make them take
// turns instead of failing on "relation already exists".
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testkit.Pool(t)

	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			_, err := postgres.Migrate(ctx, pool, postgres.Up)
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
	if err := postgres.CheckSchema(ctx, pool); err != nil {
		t.Fatalf("CheckSchema = %v", err)
	}
}

// assertStatus checks that Status lists every migration, in order, in the
// given state.
func assertStatus(t *testing.T, pool *pgxpool.Pool, applied bool) {
	t.Helper()
	list, err := postgres.Status(context.Background(), pool)
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
