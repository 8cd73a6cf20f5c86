package main

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/authsidecar/authsidecar/proxy/internal/store"
)

// countingStore counts login attempts as the stores do, and fails while
// down: the attempt may or may not have counted (here: it did, as a
// frozen server's late commit does), and nothing can be taken back.
type countingStore struct {
	store.Store
	mu       sync.Mutex
	down     bool
	failures int
	calls    []string
}

var errDown = errors.New("database did not answer: store unavailable")

func (s *countingStore) ReserveLoginAttempt(context.Context, string, string, time.Time) (int, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "reserve")
	s.failures++
	if s.down {
		return 0, time.Time{}, errDown
	}
	return s.failures, time.Time{}, nil
}

func (s *countingStore) ReleaseLoginAttempt(context.Context, string, string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "release")
	if s.down {
		return errDown
	}
	s.failures = max(s.failures-1, 0)
	return nil
}

func (s *countingStore) ResetLoginFailures(context.Context, string, string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "reset")
	if s.down {
		return false, errDown
	}
	s.failures = 0
	return true, nil
}

func (s *countingStore) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.calls = nil
	s.mu.Unlock()
}

// Attempts whose fate an outage hid are taken back before the account's
// next login, so that retries during an outage lock no one out.
func TestOutageDoesNotLockOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := &countingStore{}
	s := newOutageSafeAttempts(cs, zaptest.NewLogger(t))

	cs.setDown(true)
	for range 8 { // retries during the outage: each may have counted
		if _, _, err := s.ReserveLoginAttempt(ctx, "d", "u", time.Now()); err == nil {
			t.Fatal("reserve succeeded while down")
		}
	}
	cs.setDown(false)
	attempt, _, err := s.ReserveLoginAttempt(ctx, "d", "u", time.Now())
	if err != nil || attempt != 1 {
		t.Fatalf("first attempt after the outage: attempt %d, %v; want 1 (the outage's attempts taken back)", attempt, err)
	}

	// A login that proved its password but could not reset the count has
	// the reset done later, and then nothing is taken back on top of it.
	cs.setDown(true)
	if _, err := s.ResetLoginFailures(ctx, "d", "u"); err == nil {
		t.Fatal("reset succeeded while down")
	}
	_ = s.ReleaseLoginAttempt(ctx, "d", "u")
	cs.setDown(false)
	if attempt, _, err := s.ReserveLoginAttempt(ctx, "d", "u", time.Now()); err != nil || attempt != 1 {
		t.Fatalf("after a remembered reset: attempt %d, %v; want 1", attempt, err)
	}
	if want := []string{"reset", "reserve"}; !slices.Equal(cs.calls, want) {
		t.Errorf("calls %v, want %v", cs.calls, want)
	}
}

// Run settles what is owed in the background once the store answers.
func TestOutageDebtsAreSettled(t *testing.T) {
	t.Parallel()
	cs := &countingStore{}
	s := newOutageSafeAttempts(cs, zaptest.NewLogger(t))
	cs.setDown(true)
	_, _, _ = s.ReserveLoginAttempt(context.Background(), "d", "u", time.Now())
	cs.setDown(false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for {
		cs.mu.Lock()
		n := cs.failures
		cs.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("count still %d: the debt was not settled", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
