package password

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// cheap keeps the unit tests fast under -race; the format and the logic are
// the same as at OWASP cost.
var cheap = Params{Memory: 64, Time: 1, Threads: 1}

func newHasher(t *testing.T, opts Options) *Hasher {
	t.Helper()
	if opts.Params == (Params{}) {
		opts.Params = cheap
	}
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHashAndVerify(t *testing.T) {
	t.Parallel()
	h := newHasher(t, Options{})
	ctx := context.Background()
	enc, err := h.Hash(ctx, "1111")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("unexpected encoding %q", enc)
	}
	if ok, err := h.Verify(ctx, "1111", enc); err != nil || !ok {
		t.Fatalf("right password: ok=%v err=%v", ok, err)
	}
	if ok, err := h.Verify(ctx, "1112", enc); err != nil || ok {
		t.Fatalf("wrong password: ok=%v err=%v", ok, err)
	}
	enc2, _ := h.Hash(ctx, "1111")
	if enc2 == enc {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
}

func TestOWASPDefault(t *testing.T) {
	t.Parallel()
	h, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := h.Hash(context.Background(), "1234")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("default parameters are not OWASP's: %q", enc)
	}
}

func TestVerifyUnknownAccountIsFalse(t *testing.T) {
	t.Parallel()
	h := newHasher(t, Options{})
	ok, err := h.Verify(context.Background(), "dummy password for unknown accounts", "")
	if err != nil || ok {
		t.Fatalf("an empty stored hash must never verify: ok=%v err=%v", ok, err)
	}
}

// The unknown account's hash costs what a real one at the hasher's
// parameters costs (same format, same m, t, p, salt and key lengths), and
// is not the same in two hashers.
func TestDummyHashIsARealHashsShape(t *testing.T) {
	t.Parallel()
	a, b := newHasher(t, Options{}), newHasher(t, Options{})
	genuine, err := a.Hash(context.Background(), "1234")
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(a.dummy); err != nil {
		t.Fatalf("dummy hash %q: %v", a.dummy, err)
	}
	rp, rsalt, rkey, err := decode(genuine)
	if err != nil {
		t.Fatal(err)
	}
	dp, dsalt, dkey, err := decode(a.dummy)
	if err != nil {
		t.Fatal(err)
	}
	if dp != rp || len(dsalt) != len(rsalt) || len(dkey) != len(rkey) {
		t.Fatalf("dummy %q is not shaped like a real hash %q", a.dummy, genuine)
	}
	if a.dummy == b.dummy {
		t.Fatal("two hashers made the same dummy hash")
	}
}

func TestVerifyRejectsMalformedAndHostileHashes(t *testing.T) {
	t.Parallel()
	h := newHasher(t, Options{})
	for _, enc := range []string{
		"plain",
		"$2a$10$abcdefghijklmnopqrstuv",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5", // would allocate ~95 GiB
		"$argon2id$v=19$m=64,t=1000,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=64,t=1,p=1$!!$a2V5a2V5a2V5a2V5a2V5a2V5",
	} {
		ok, err := h.Verify(context.Background(), "x", enc)
		if ok || !errors.Is(err, ErrMalformedHash) {
			t.Errorf("%q: ok=%v err=%v, want ErrMalformedHash", enc, ok, err)
		}
	}
}

func TestConcurrencyIsBounded(t *testing.T) {
	t.Parallel()
	h := newHasher(t, Options{Concurrency: 1, MaxWait: 20 * time.Millisecond})
	w, err := h.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// With the only slot taken, a second hash must give up fast with ErrBusy.
	start := time.Now()
	_, err = h.Hash(context.Background(), "1111")
	if !errors.Is(err, auth.ErrBusy) {
		t.Fatalf("got %v, want auth.ErrBusy", err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("waited %s for a slot", waited)
	}
	h.release(w, 0)
	if _, err := h.Hash(context.Background(), "1111"); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestConcurrentCallersShareSlots(t *testing.T) {
	t.Parallel()
	h := newHasher(t, Options{Concurrency: 2, MaxWait: 5 * time.Second, Share: 1})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := h.Hash(context.Background(), "1111")
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(h.free) != cap(h.free) {
		t.Fatalf("%d of %d slots still held", cap(h.free)-len(h.free), cap(h.free))
	}
}

// TestSlotsBusyAndQueued: what the metrics read of the hasher's state.
func TestSlotsBusyAndQueued(t *testing.T) {
	t.Parallel()
	h := newHasher(t, Options{Concurrency: 2, MaxWait: time.Minute, Share: 1})
	if h.Slots() != 2 || h.Busy() != 0 || h.Queued() != 0 {
		t.Fatalf("idle: slots %d, busy %d, queued %d", h.Slots(), h.Busy(), h.Queued())
	}
	var held []worker
	for range 2 {
		w, err := h.acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, w)
	}
	if h.Busy() != 2 || h.Queued() != 0 {
		t.Fatalf("both taken: busy %d, queued %d", h.Busy(), h.Queued())
	}
	done := make(chan error, 1)
	go func() {
		_, err := h.Hash(context.Background(), "1111")
		done <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); h.Queued() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a caller waiting for a slot: queued %d, want 1", h.Queued())
		}
	}
	for _, w := range held {
		h.release(w, 0)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if h.Queued() != 0 || h.Busy() != 0 {
		t.Fatalf("after: busy %d, queued %d", h.Busy(), h.Queued())
	}
}

func TestCanceledContextGivesUp(t *testing.T) {
	t.Parallel()
	h := newHasher(t, Options{Concurrency: 1, MaxWait: time.Minute})
	w, _ := h.acquire(context.Background())
	defer h.release(w, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Verify(ctx, "x", ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// TestHashingRunsAtLowerPriority: an in-process hash runs on a thread of
// lower priority (hashNice), so that proxied traffic wins the CPU under a flood.
func TestHashingRunsAtLowerPriority(t *testing.T) {
	t.Parallel()
	var low bool
	var prio string
	lowPriority(func() { low, prio = isLowPriority(0) })
	if !low {
		t.Fatalf("hashing thread priority: %s", prio)
	}
}

// TestSlotRestsForItsShare: after a hash that took d, a slot with Share 0.5
// stays closed for another d, then opens again without anyone's help.
func TestSlotRestsForItsShare(t *testing.T) {
	t.Parallel()
	// Every hash "takes" 1s.
	h := newHasher(t, Options{Concurrency: 1, MaxWait: 20 * time.Millisecond, Share: 0.5, Now: steppingClock(time.Second)})
	if _, err := h.Hash(context.Background(), "1111"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Hash(context.Background(), "1111"); !errors.Is(err, auth.ErrBusy) {
		t.Fatalf("right after a hash its slot is resting: got %v, want auth.ErrBusy", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := h.Hash(context.Background(), "1111")
		if err == nil {
			break
		}
		if !errors.Is(err, auth.ErrBusy) || time.Now().After(deadline) {
			t.Fatalf("the slot did not open again after its rest: %v", err)
		}
	}
}

func TestRestKeepsTheSlotToItsShareOfACore(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	for _, tc := range []struct {
		wall, cpu time.Duration
		share     float64
		want      time.Duration
	}{
		{40 * ms, 40 * ms, 0.5, 40 * ms},   // on a CPU throughout: rest as long
		{40 * ms, 0, 0.5, 40 * ms},         // CPU time unknown: taken as the wall time
		{400 * ms, 40 * ms, 0.5, 0},        // waited for the CPU: it already rested enough
		{100 * ms, 40 * ms, 0.25, 60 * ms}, // 40 ms of CPU in 160 ms
		{40 * ms, 80 * ms, 0.5, 120 * ms},  // two threads: 80 ms of CPU in 160 ms
		{40 * ms, 40 * ms, 1, 0},           // share 1: back to back
	} {
		if got := rest(tc.wall, tc.cpu, tc.share); got != tc.want {
			t.Errorf("rest(wall %v, cpu %v, share %v) = %v, want %v", tc.wall, tc.cpu, tc.share, got, tc.want)
		}
	}
}

// reportingWorker answers every request at once, saying it took cpu.
type reportingWorker struct{ cpu time.Duration }

func (w reportingWorker) run(request) (response, error) {
	return response{Hash: "$argon2id$", CPU: w.cpu}, nil
}
func (reportingWorker) close() {}

// withWorker replaces the only worker of h by w.
func withWorker(t *testing.T, h *Hasher, w worker) {
	t.Helper()
	if h.Slots() != 1 {
		t.Fatalf("withWorker needs one slot, h has %d", h.Slots())
	}
	old := <-h.free
	old.close()
	h.workers[0] = w
	h.free <- w
}

// A slot rests for the CPU time its worker reports, not for the wall
// time, which grows on a busy host while the hash waits for a CPU.
func TestSlotRestsForItsCPUTime(t *testing.T) {
	t.Parallel()
	// Every hash "takes" 1s of wall time: 10ms of CPU time needs no rest at
	// share 0.5; an hour of CPU time (threads of a slot busy throughout) a
	// rest of about two hours, which no stall of a busy machine ends
	// before the next call.
	quick := newHasher(t, Options{Concurrency: 1, MaxWait: time.Millisecond, Share: 0.5, Now: steppingClock(time.Second)})
	withWorker(t, quick, reportingWorker{cpu: 10 * time.Millisecond})
	for range 3 {
		if _, err := quick.Hash(context.Background(), "1111"); err != nil {
			t.Fatalf("a hash that used a hundredth of its wall time on a CPU rested: %v", err)
		}
	}
	busy := newHasher(t, Options{Concurrency: 1, MaxWait: 20 * time.Millisecond, Share: 0.5, Now: steppingClock(time.Second)})
	withWorker(t, busy, reportingWorker{cpu: time.Hour})
	if _, err := busy.Hash(context.Background(), "1111"); err != nil {
		t.Fatal(err)
	}
	if _, err := busy.Hash(context.Background(), "1111"); !errors.Is(err, auth.ErrBusy) {
		t.Fatalf("right after a hash that kept the slot's threads busy, it is resting: got %v, want auth.ErrBusy", err)
	}
}

// TestShareOneNeverRests: Share 1 is hashing back to back.
func TestShareOneNeverRests(t *testing.T) {
	t.Parallel()
	h := newHasher(t, Options{Concurrency: 1, MaxWait: time.Millisecond, Share: 1, Now: steppingClock(time.Hour)})
	for range 3 {
		if _, err := h.Hash(context.Background(), "1111"); err != nil {
			t.Fatal(err)
		}
	}
}

// steppingClock is a clock that is step later at each reading, so that
// every hash seems to take step.
func steppingClock(step time.Duration) func() time.Time {
	var mu sync.Mutex
	clock := time.Unix(0, 0)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(step)
		return clock
	}
}
