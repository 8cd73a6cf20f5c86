package postgres_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
)

func reserve(t *testing.T, s *postgres.Store, device, user string, now time.Time) (int, time.Time) {
	t.Helper()
	n, until, err := s.ReserveLoginAttempt(context.Background(), device, user, now)
	if err != nil {
		t.Fatal(err)
	}
	return n, until
}

func lock(t *testing.T, s *postgres.Store, device, user string, now time.Time, base, maxLock time.Duration) time.Time {
	t.Helper()
	until, err := s.LockAccount(context.Background(), device, user, now, base, maxLock)
	if err != nil {
		t.Fatal(err)
	}
	return until
}

func TestReserveLoginAttemptCounts(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	for want := 1; want <= 4; want++ {
		if n, until := reserve(t, s, "dev", "1111", t0); n != want || !until.IsZero() {
			t.Fatalf("attempt %d: got %d, locked until %v", want, n, until)
		}
	}
	// Accounts are device + username: each counts on its own, known or not.
	if n, _ := reserve(t, s, "dev", "2222", t0); n != 1 {
		t.Fatalf("another username: attempt %d, want 1", n)
	}
	if n, _ := reserve(t, s, "dev-2", "1111", t0); n != 1 {
		t.Fatalf("same username on another device: attempt %d, want 1", n)
	}
}

func TestReserveLoginAttemptWhileLocked(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	for range 5 {
		reserve(t, s, "dev", "1111", t0)
	}
	until := lock(t, s, "dev", "1111", t0, time.Minute, time.Hour)
	if !until.Equal(t0.Add(time.Minute)) {
		t.Fatalf("locked until %v, want %v", until, t0.Add(time.Minute))
	}
	// While locked nothing is counted and the lock's end is reported.
	for _, now := range []time.Time{t0, t0.Add(59 * time.Second)} {
		n, got := reserve(t, s, "dev", "1111", now)
		if n != 0 || !got.Equal(until) {
			t.Fatalf("at %v while locked: attempt %d, until %v; want 0, %v", now, n, got, until)
		}
	}
	// When the lock ends a new run of failures starts.
	if n, got := reserve(t, s, "dev", "1111", until); n != 1 || !got.IsZero() {
		t.Fatalf("after the lock: attempt %d, until %v; want 1, zero", n, got)
	}
	if n, _ := reserve(t, s, "dev", "1111", until); n != 2 {
		t.Fatalf("second attempt after the lock: %d, want 2", n)
	}
}

// Counting happens before the password check, atomically: parallel guesses
// (from any number of replicas) each get their own number.
func TestReserveLoginAttemptConcurrent(t *testing.T) {
	t.Parallel()
	s, _ := newStoreConns(t, 26)
	const n = 25
	got := make([]int, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			got[i], _, errs[i] = s.ReserveLoginAttempt(context.Background(), "dev", "1111", t0)
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(got)
	for i, v := range got {
		if v != i+1 {
			t.Fatalf("attempt numbers %v; want 1..%d each exactly once", got, n)
		}
	}
}

func TestReleaseLoginAttempt(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	reserve(t, s, "dev", "1111", t0)
	reserve(t, s, "dev", "1111", t0)
	if err := s.ReleaseLoginAttempt(ctx, "dev", "1111"); err != nil {
		t.Fatal(err)
	}
	if n, _ := reserve(t, s, "dev", "1111", t0); n != 2 {
		t.Fatalf("after a release: attempt %d, want 2", n)
	}
	// Releasing an account never counted is harmless.
	if err := s.ReleaseLoginAttempt(ctx, "dev", "unknown"); err != nil {
		t.Fatal(err)
	}
}

func TestLockAccountDoublesAndCaps(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	const base, maxLock = time.Minute, 3 * time.Minute
	now := t0
	for i, want := range []time.Duration{base, 2 * base, maxLock, maxLock} {
		for range 5 {
			reserve(t, s, "dev", "1111", now)
		}
		until := lock(t, s, "dev", "1111", now, base, maxLock)
		if got := until.Sub(now); got != want {
			t.Fatalf("lockout %d lasts %v, want %v", i+1, got, want)
		}
		// Locking again while locked keeps the lock (no extra doubling).
		if again := lock(t, s, "dev", "1111", now.Add(time.Second), base, maxLock); !again.Equal(until) {
			t.Fatalf("lockout %d: locking a locked account moved its end to %v, want %v", i+1, again, until)
		}
		now = until
	}
}

func TestResetLoginFailures(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	for range 5 {
		reserve(t, s, "dev", "1111", t0)
	}
	lock(t, s, "dev", "1111", t0, time.Minute, time.Hour)

	had, err := s.ResetLoginFailures(ctx, "dev", "1111")
	if err != nil || !had {
		t.Fatalf("ResetLoginFailures = %v, %v; want true", had, err)
	}
	// Unlocked, and the count starts over.
	if n, until := reserve(t, s, "dev", "1111", t0); n != 1 || !until.IsZero() {
		t.Fatalf("after reset: attempt %d, until %v; want 1, zero", n, until)
	}
	// The lockout history is gone too: the next lock is the base again.
	if until := lock(t, s, "dev", "1111", t0, time.Minute, time.Hour); !until.Equal(t0.Add(time.Minute)) {
		t.Fatalf("first lock after reset lasts %v, want 1m", until.Sub(t0))
	}
	if had, err := s.ResetLoginFailures(ctx, "dev", "never-seen"); err != nil || had {
		t.Fatalf("reset of an account never counted = %v, %v; want false", had, err)
	}
}

func TestDeleteStaleLoginFailures(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	old := t0.Add(-2 * time.Hour)
	for _, u := range []string{"a", "b", "c"} {
		reserve(t, s, "dev", u, old)
	}
	// Stale but still locked: kept.
	for range 5 {
		reserve(t, s, "dev", "locked", old)
	}
	lock(t, s, "dev", "locked", old, 4*time.Hour, 4*time.Hour)
	// Recent: kept.
	reserve(t, s, "dev", "recent", t0)

	before := t0.Add(-time.Hour)
	if n, err := s.DeleteStaleLoginFailures(ctx, before, t0, 2); err != nil || n != 2 {
		t.Fatalf("DeleteStaleLoginFailures(limit 2) = %d, %v; want 2", n, err)
	}
	if n, err := s.DeleteStaleLoginFailures(ctx, before, t0, 2); err != nil || n != 1 {
		t.Fatalf("second DeleteStaleLoginFailures = %d, %v; want 1", n, err)
	}
	var left []string
	rows, err := pool.Query(ctx, `SELECT username FROM login_failures ORDER BY username`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			t.Fatal(err)
		}
		left = append(left, u)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"locked", "recent"}; !slices.Equal(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	// The lock survived.
	if n, _ := reserve(t, s, "dev", "locked", t0); n != 0 {
		t.Fatalf("locked account counted attempt %d after the stale cleanup", n)
	}
}
