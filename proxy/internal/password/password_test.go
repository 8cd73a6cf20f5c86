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
	release, err := h.acquire(context.Background())
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
	release()
	if _, err := h.Hash(context.Background(), "1111"); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestConcurrentCallersShareSlots(t *testing.T) {
	t.Parallel()
	h := newHasher(t, Options{Concurrency: 2, MaxWait: 5 * time.Second})
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
	if len(h.slots) != 0 {
		t.Fatalf("%d slots still held", len(h.slots))
	}
}

func TestCanceledContextGivesUp(t *testing.T) {
	t.Parallel()
	h := newHasher(t, Options{Concurrency: 1, MaxWait: time.Minute})
	release, _ := h.acquire(context.Background())
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Verify(ctx, "x", ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// TestHashingRunsAtLowerPriority: the hash runs on a thread whose nice
// value was raised, so that proxied traffic wins the CPU under a flood.
func TestHashingRunsAtLowerPriority(t *testing.T) {
	t.Parallel()
	var nice int
	lowPriority(func() { nice = threadNice() })
	if want := expectedNice(); nice != want {
		t.Fatalf("hashing thread nice %d, want %d", nice, want)
	}
}
