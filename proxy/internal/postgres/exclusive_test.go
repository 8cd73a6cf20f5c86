package postgres_test

import (
	"context"
	"testing"

	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
)

// The janitor's lock: one holder at a time per name and schema, across
// processes (here: two pools, as two replicas would have).
func TestTryExclusive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s1, pool := newStore(t)
	s2 := postgres.NewStore(openPool(t, pool.Config().ConnString()))

	release, ok, err := s1.TryExclusive(ctx, "janitor")
	if err != nil || !ok {
		t.Fatalf("first TryExclusive = %v, %v; want the lock", ok, err)
	}
	if _, ok, err := s2.TryExclusive(ctx, "janitor"); err != nil || ok {
		t.Fatalf("second replica while held = %v, %v; want not ok", ok, err)
	}
	// Another name is another lock.
	other, ok, err := s2.TryExclusive(ctx, "something else")
	if err != nil || !ok {
		t.Fatalf("another name = %v, %v; want the lock", ok, err)
	}
	other()

	// Another schema is another lock.
	s3, _ := newStore(t)
	r3, ok, err := s3.TryExclusive(ctx, "janitor")
	if err != nil || !ok {
		t.Fatalf("another schema = %v, %v; want the lock", ok, err)
	}
	r3()

	release()
	r2, ok, err := s2.TryExclusive(ctx, "janitor")
	if err != nil || !ok {
		t.Fatalf("after release = %v, %v; want the lock", ok, err)
	}
	r2()
}
