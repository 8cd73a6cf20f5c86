package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

var keyTests = []test{
	{"SigningKeyPEMGeneratedOnce", testSigningKeyPEMGeneratedOnce},
	{"SigningKeyPEMConcurrentFirstCalls", testSigningKeyPEMConcurrentFirstCalls},
	{"SigningKeyPEMGenerateError", testSigningKeyPEMGenerateError},
}

// keyGenerator returns a generate function whose every key is different,
// and a count of its calls.
func keyGenerator() (func() (string, []byte, error), *atomic.Int64) {
	var calls atomic.Int64
	return func() (string, []byte, error) {
		n := calls.Add(1)
		id := fmt.Sprintf("key-%d", n)
		return id, []byte("-----PEM of " + id + "-----\n"), nil
	}, &calls
}

func testSigningKeyPEMGeneratedOnce(t *testing.T, s Store) {
	ctx := context.Background()
	gen, calls := keyGenerator()

	first, err := s.SigningKeyPEM(ctx, gen)
	if err != nil {
		t.Fatal(err)
	}
	if string(first) != "-----PEM of key-1-----\n" {
		t.Fatalf("first key %q", first)
	}
	second, err := s.SigningKeyPEM(ctx, gen)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatalf("second call returned another key: %q", second)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("generate called %d times, want 1", n)
	}
	if n := countRows(t, s, "signing_keys"); n != 1 {
		t.Fatalf("%d stored keys, want 1", n)
	}
}

// Callers (replicas, or goroutines of one process) starting at once
// against an empty store must agree on one key, or tokens signed by one
// would not verify on another.
func testSigningKeyPEMConcurrentFirstCalls(t *testing.T, s Store) {
	ctx := context.Background()
	gen, _ := keyGenerator()

	const n = 8
	keys := make([][]byte, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			keys[i], errs[i] = s.SigningKeyPEM(ctx, gen)
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("caller %d got %q, caller 0 got %q", i, keys[i], keys[0])
		}
	}
	if n := countRows(t, s, "signing_keys"); n != 1 {
		t.Fatalf("%d stored keys, want 1", n)
	}
}

func testSigningKeyPEMGenerateError(t *testing.T, s Store) {
	boom := errors.New("no entropy")
	_, err := s.SigningKeyPEM(context.Background(), func() (string, []byte, error) { return "", nil, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("a failing generator: %v, want its error", err)
	}
	if n := countRows(t, s, "signing_keys"); n != 0 {
		t.Fatalf("%d stored keys after a failing generator, want 0", n)
	}
}
