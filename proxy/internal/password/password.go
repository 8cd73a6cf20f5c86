// Package password hashes and verifies passwords with argon2id and bounds how
// many hashes run at once.
//
// Headsets log in with short PINs, so the hash is the last line of defence if
// the database leaks; argon2id at the OWASP parameters makes each guess cost
// memory as well as time. Because each hash costs ~19 MiB and tens of
// milliseconds of a core, the Hasher admits only a few at once: a login flood
// must not starve proxied traffic or exhaust memory.
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// Params are argon2id cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
}

// OWASP is the OWASP Password Storage Cheat Sheet's first argon2id choice:
// m=19 MiB, t=2, p=1.
var OWASP = Params{Memory: 19 * 1024, Time: 2, Threads: 1}

const (
	saltLen = 16
	keyLen  = 32
	// Bounds on parameters read back from a stored hash: a corrupted or
	// hostile row must not make one verification allocate gigabytes.
	maxMemory  = 256 * 1024
	maxTime    = 16
	maxThreads = 16
)

// ErrMalformedHash: a stored hash is not one this package wrote.
var ErrMalformedHash = errors.New("malformed password hash")

// Hasher hashes and verifies passwords, at most Limit at a time.
type Hasher struct {
	params Params
	slots  chan struct{}
	wait   time.Duration
	dummy  string
}

// Options configure a Hasher. Zero fields take the defaults stated.
type Options struct {
	Params Params // default OWASP
	// Concurrency is how many hashes may run at once (default:
	// DefaultConcurrency). More would only queue inside the scheduler and
	// hold memory; and the other half stays free for proxied traffic, so
	// that a login flood cannot starve it.
	Concurrency int
	// MaxWait is how long a call waits for a free slot before it gives up
	// with auth.ErrBusy (default 2s), so that a flood fails fast instead of
	// piling up goroutines that each hold a request body.
	MaxWait time.Duration
}

// DefaultConcurrency is how many hashes run at once unless Options says
// otherwise: half the CPUs the process may use (GOMAXPROCS, which follows
// a container's CPU limit), at least one. It is read once, at start, before
// the proxy adds processors for the hashing threads.
func DefaultConcurrency() int { return defaultConcurrency }

var defaultConcurrency = max(1, runtime.GOMAXPROCS(0)/2)

// New returns a Hasher.
func New(opts Options) (*Hasher, error) {
	if opts.Params == (Params{}) {
		opts.Params = OWASP
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency()
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 2 * time.Second
	}
	h := &Hasher{params: opts.Params, slots: make(chan struct{}, opts.Concurrency), wait: opts.MaxWait}
	dummy, err := h.hash([]byte("dummy password for unknown accounts"))
	if err != nil {
		return nil, err
	}
	h.dummy = dummy
	return h, nil
}

// Hash returns an encoded argon2id hash of pw in the PHC string format.
func (h *Hasher) Hash(ctx context.Context, pw string) (string, error) {
	release, err := h.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	var enc string
	lowPriority(func() { enc, err = h.hash([]byte(pw)) })
	return enc, err
}

// Verify reports whether pw matches encoded. An empty encoded (unknown
// account) is checked against a dummy hash with the same cost, so that the
// time a login takes does not tell whether the account exists.
func (h *Hasher) Verify(ctx context.Context, pw, encoded string) (bool, error) {
	release, err := h.acquire(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	var ok bool
	lowPriority(func() {
		if encoded == "" {
			_, _ = verify([]byte(pw), h.dummy)
			return
		}
		ok, err = verify([]byte(pw), encoded)
	})
	return ok, err
}

// lowPriority runs f on an OS thread of its own whose scheduling priority
// is lowered (where the system allows it), and waits for it. A hash is tens
// of milliseconds of pure CPU: at normal priority a login flood takes whole
// cores from proxied requests, which are short and latency-bound. At lower
// priority the kernel runs the hashes on whatever CPU the proxied traffic
// leaves, and logins slow down first. The goroutine exits still locked to
// its thread, so the thread ends with it and never runs other goroutines
// at the lowered priority.
func lowPriority(f func()) {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		lowerThreadPriority()
		defer close(done)
		f()
	}()
	<-done
}

func (h *Hasher) acquire(ctx context.Context) (func(), error) {
	select {
	case h.slots <- struct{}{}:
		return func() { <-h.slots }, nil
	default:
	}
	t := time.NewTimer(h.wait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		return func() { <-h.slots }, nil
	case <-t.C:
		return nil, fmt.Errorf("password hashing: all %d slots taken: %w", cap(h.slots), auth.ErrBusy)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (h *Hasher) hash(pw []byte) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	p := h.params
	key := argon2.IDKey(pw, salt, p.Time, p.Memory, p.Threads, keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

func verify(pw []byte, encoded string) (bool, error) {
	p, salt, key, err := decode(encoded)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey(pw, salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

func decode(encoded string) (Params, []byte, []byte, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return Params{}, nil, nil, ErrMalformedHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return Params{}, nil, nil, fmt.Errorf("%w: version %q", ErrMalformedHash, parts[2])
	}
	var p Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return Params{}, nil, nil, fmt.Errorf("%w: parameters: %w", ErrMalformedHash, err)
	}
	if p.Memory == 0 || p.Memory > maxMemory || p.Time == 0 || p.Time > maxTime || p.Threads == 0 || p.Threads > maxThreads {
		return Params{}, nil, nil, fmt.Errorf("%w: parameters out of range", ErrMalformedHash)
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return Params{}, nil, nil, fmt.Errorf("%w: salt", ErrMalformedHash)
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return Params{}, nil, nil, fmt.Errorf("%w: key", ErrMalformedHash)
	}
	return p, salt, key, nil
}
