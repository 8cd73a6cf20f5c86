package storetest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

var lockoutTests = []test{
	{"ReserveLoginAttemptCounts", testReserveLoginAttemptCounts},
	{"ReserveLoginAttemptWhileLocked", testReserveLoginAttemptWhileLocked},
	{"ReserveLoginAttemptConcurrent", testReserveLoginAttemptConcurrent},
	{"ReleaseLoginAttempt", testReleaseLoginAttempt},
	{"LockAccountDoublesAndCaps", testLockAccountDoublesAndCaps},
	{"LockAccountNeverCountedIsNotFound", testLockAccountNeverCountedIsNotFound},
	{"ResetLoginFailures", testResetLoginFailures},
	{"DeleteStaleLoginFailures", testDeleteStaleLoginFailures},
}

func reserve(t *testing.T, s Store, device, user string, now time.Time) (int, time.Time) {
	t.Helper()
	n, until, err := s.ReserveLoginAttempt(context.Background(), device, user, now)
	if err != nil {
		t.Fatal(err)
	}
	return n, until
}

func lock(t *testing.T, s Store, device, user string, now time.Time, base, maxLock time.Duration) time.Time {
	t.Helper()
	until, err := s.LockAccount(context.Background(), device, user, now, base, maxLock)
	if err != nil {
		t.Fatal(err)
	}
	return until
}

func testReserveLoginAttemptCounts(t *testing.T, s Store) {
	for want := 1; want <= 4; want++ {
		if n, until := reserve(t, s, "dev", "1111", T0); n != want || !until.IsZero() {
			t.Fatalf("attempt %d: got %d, locked until %v", want, n, until)
		}
	}
	// Accounts are device + username: each counts on its own, known or not.
	if n, _ := reserve(t, s, "dev", "2222", T0); n != 1 {
		t.Fatalf("another username: attempt %d, want 1", n)
	}
	if n, _ := reserve(t, s, "dev-2", "1111", T0); n != 1 {
		t.Fatalf("same username on another device: attempt %d, want 1", n)
	}
}

func testReserveLoginAttemptWhileLocked(t *testing.T, s Store) {
	for range 5 {
		reserve(t, s, "dev", "1111", T0)
	}
	until := lock(t, s, "dev", "1111", T0, time.Minute, time.Hour)
	if !until.Equal(T0.Add(time.Minute)) {
		t.Fatalf("locked until %v, want %v", until, T0.Add(time.Minute))
	}
	// While locked nothing is counted and the lock's end is reported.
	for _, now := range []time.Time{T0, T0.Add(59 * time.Second), until.Add(-time.Microsecond)} {
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
// each get their own number.
func testReserveLoginAttemptConcurrent(t *testing.T, s Store) {
	const n = 25
	got := make([]int, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			got[i], _, errs[i] = s.ReserveLoginAttempt(context.Background(), "dev", "1111", T0)
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

func testReleaseLoginAttempt(t *testing.T, s Store) {
	ctx := context.Background()
	reserve(t, s, "dev", "1111", T0)
	reserve(t, s, "dev", "1111", T0)
	if err := s.ReleaseLoginAttempt(ctx, "dev", "1111"); err != nil {
		t.Fatal(err)
	}
	if n, _ := reserve(t, s, "dev", "1111", T0); n != 2 {
		t.Fatalf("after a release: attempt %d, want 2", n)
	}
	// Releasing an account never counted is harmless.
	if err := s.ReleaseLoginAttempt(ctx, "dev", "unknown"); err != nil {
		t.Fatal(err)
	}
	// The count never goes below zero.
	reserve(t, s, "dev", "3333", T0)
	for range 3 {
		if err := s.ReleaseLoginAttempt(ctx, "dev", "3333"); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := reserve(t, s, "dev", "3333", T0); n != 1 {
		t.Fatalf("after releasing more than was reserved: attempt %d, want 1", n)
	}
	// A locked account keeps its lock and count.
	for range 5 {
		reserve(t, s, "dev", "4444", T0)
	}
	until := lock(t, s, "dev", "4444", T0, time.Minute, time.Hour)
	if err := s.ReleaseLoginAttempt(ctx, "dev", "4444"); err != nil {
		t.Fatal(err)
	}
	if n, got := reserve(t, s, "dev", "4444", T0); n != 0 || !got.Equal(until) {
		t.Fatalf("a release unlocked the account: attempt %d, until %v", n, got)
	}
}

func testLockAccountDoublesAndCaps(t *testing.T, s Store) {
	const base, maxLock = time.Minute, 3 * time.Minute
	now := T0
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

// Locking needs a counted failure first; an account whose count is gone
// (reset by a successful login meanwhile) is not found.
func testLockAccountNeverCountedIsNotFound(t *testing.T, s Store) {
	_, err := s.LockAccount(context.Background(), "dev", "never-seen", T0, time.Minute, time.Hour)
	if !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("LockAccount of an account never counted: %v, want ErrNotFound", err)
	}
}

func testResetLoginFailures(t *testing.T, s Store) {
	ctx := context.Background()
	for range 5 {
		reserve(t, s, "dev", "1111", T0)
	}
	lock(t, s, "dev", "1111", T0, time.Minute, time.Hour)

	had, err := s.ResetLoginFailures(ctx, "dev", "1111")
	if err != nil || !had {
		t.Fatalf("ResetLoginFailures = %v, %v; want true", had, err)
	}
	// Unlocked, and the count starts over.
	if n, until := reserve(t, s, "dev", "1111", T0); n != 1 || !until.IsZero() {
		t.Fatalf("after reset: attempt %d, until %v; want 1, zero", n, until)
	}
	// The lockout history is gone too: the next lock is the base again.
	if until := lock(t, s, "dev", "1111", T0, time.Minute, time.Hour); !until.Equal(T0.Add(time.Minute)) {
		t.Fatalf("first lock after reset lasts %v, want 1m", until.Sub(T0))
	}
	if had, err := s.ResetLoginFailures(ctx, "dev", "never-seen"); err != nil || had {
		t.Fatalf("reset of an account never counted = %v, %v; want false", had, err)
	}
}

func testDeleteStaleLoginFailures(t *testing.T, s Store) {
	ctx := context.Background()
	old := T0.Add(-2 * time.Hour)
	for _, u := range []string{"a", "b", "c"} {
		reserve(t, s, "dev", u, old)
	}
	// Stale but still locked: kept.
	for range 5 {
		reserve(t, s, "dev", "locked", old)
	}
	lock(t, s, "dev", "locked", old, 4*time.Hour, 4*time.Hour)
	// Recent: kept.
	reserve(t, s, "dev", "recent", T0)

	before := T0.Add(-time.Hour)
	if n, err := s.DeleteStaleLoginFailures(ctx, before, T0, 2); err != nil || n != 2 {
		t.Fatalf("DeleteStaleLoginFailures(limit 2) = %d, %v; want 2", n, err)
	}
	if n, err := s.DeleteStaleLoginFailures(ctx, before, T0, 2); err != nil || n != 1 {
		t.Fatalf("second DeleteStaleLoginFailures = %d, %v; want 1", n, err)
	}
	if n, err := s.DeleteStaleLoginFailures(ctx, before, T0, 2); err != nil || n != 0 {
		t.Fatalf("third DeleteStaleLoginFailures = %d, %v; want 0", n, err)
	}
	// Left: "locked" and "recent".
	if n := countRows(t, s, "login_failures"); n != 2 {
		t.Fatalf("%d login_failures rows left, want 2 (locked, recent)", n)
	}
	// The lock survived.
	if n, _ := reserve(t, s, "dev", "locked", T0); n != 0 {
		t.Fatalf("locked account counted attempt %d after the stale cleanup", n)
	}
	// The recent count survived.
	if n, _ := reserve(t, s, "dev", "recent", T0); n != 2 {
		t.Fatalf("recent account: attempt %d after the stale cleanup, want 2", n)
	}
	// The stale counts are gone: each starts over.
	for _, u := range []string{"a", "b", "c"} {
		if n, _ := reserve(t, s, "dev", u, T0); n != 1 {
			t.Fatalf("stale account %s: attempt %d after the cleanup, want 1", u, n)
		}
	}
}
