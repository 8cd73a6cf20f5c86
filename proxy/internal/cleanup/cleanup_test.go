package cleanup_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/authsidecar/authsidecar/internal/testkit"
	"github.com/authsidecar/authsidecar/proxy/internal/cleanup"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
)

// TestOneReplicaAtATime: two janitors (two replicas) on one database never
// clean at the same time; the one that finds the lock taken skips its round.
// The round that got the lock holds it until the other round has returned,
// however late that one starts, so the two always meet.
func TestOneReplicaAtATime(t *testing.T) {
	t.Parallel()
	store := postgres.NewStore(testkit.Pool(t))
	var running, overlap, rounds atomic.Int64
	oneReturned := make(chan struct{})
	var closeOnce sync.Once
	task := cleanup.Task{Name: "held", Run: func(context.Context) (int64, error) {
		if running.Add(1) > 1 {
			overlap.Add(1) // and return at once, so that the other can too
		} else {
			<-oneReturned
		}
		running.Add(-1)
		rounds.Add(1)
		return 0, nil
	}}
	janitor := func() *cleanup.Janitor {
		return &cleanup.Janitor{
			Every: time.Hour,
			Lock: func(ctx context.Context) (func(), bool, error) {
				return store.TryExclusive(ctx, "janitor")
			},
			Tasks: []cleanup.Task{task},
			Log:   zaptest.NewLogger(t),
		}
	}
	a, b := janitor(), janitor()
	var wg sync.WaitGroup
	var ranA, ranB bool
	returned := func() { closeOnce.Do(func() { close(oneReturned) }) }
	wg.Go(func() { ranA = a.Round(context.Background()); returned() })
	wg.Go(func() { ranB = b.Round(context.Background()); returned() })
	wg.Wait()
	if overlap.Load() != 0 {
		t.Fatal("two janitors cleaned at the same time")
	}
	if ranA == ranB || rounds.Load() != 1 {
		t.Fatalf("rounds run: a=%v b=%v, %d tasks; want exactly one", ranA, ranB, rounds.Load())
	}
	// The lock is released after a round: the other replica can run next.
	if !b.Round(context.Background()) || !a.Round(context.Background()) {
		t.Fatal("the lock was not released after a round")
	}
}

func TestRunStopsWithContext(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	j := &cleanup.Janitor{
		Every: 10 * time.Millisecond,
		Lock:  func(context.Context) (func(), bool, error) { return func() {}, true, nil },
		Tasks: []cleanup.Task{{Name: "count", Run: func(context.Context) (int64, error) { n.Add(1); return 1, nil }}},
		Log:   zaptest.NewLogger(t),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { j.Run(ctx); close(done) }()
	for n.Load() < 3 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done // a Run that ignored its context would hang here, and fail the test
}
