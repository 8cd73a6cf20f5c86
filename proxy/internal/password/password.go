// Package password hashes and verifies passwords with argon2id and bounds how
// many hashes run at once.
//
// Headsets log in with short PINs, so the hash is the last line of defence if
// the database leaks; argon2id at the OWASP parameters makes each guess cost
// memory as well as time. Because each hash costs ~19 MiB and tens of
// milliseconds of a core, the Hasher admits only a few at once: a login flood
// must not starve proxied traffic or exhaust memory.
//
// It also verifies, but never writes, the hashes of users imported from
// other systems (Django's formats, bcrypt, argon2id from other libraries;
// see Check), so that they can log in with the PINs they have; the login
// then replaces such a hash with its own (see Hasher.NeedsUpgrade). These
// run in the same workers under the same bound, and every work factor they
// carry is bounded before anything is computed.
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
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

// ErrMalformedHash: a stored hash is not in a format this package can
// verify, or its parameters are out of bounds (see Check).
var ErrMalformedHash = errors.New("malformed password hash")

// Hasher hashes and verifies passwords, at most Concurrency at a time.
type Hasher struct {
	params Params
	// free holds the idle workers: taking one is taking a slot.
	free    chan worker
	workers []worker
	queued  atomic.Int64 // callers waiting for a slot
	wait    time.Duration
	share   float64
	now     func() time.Time
	dummy   string
	tracer  trace.Tracer // nil: no spans
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
	// Share is the fraction of a core one slot may keep busy hashing
	// (default DefaultShare; 1 for no pause): after a hash that took c of
	// CPU time in w of wall time, its slot stays closed for c/Share − w,
	// if that is positive. See DefaultShare for why. The CPU time is what
	// the worker process measured; without it (in-process hashing, or a
	// system where it cannot be read), c is taken to be w, and the slot
	// rests for w×(1/Share−1).
	//
	// Why CPU time: on a host busy with other work, a hash at its lowered
	// priority waits for the CPU, its wall time grows while its CPU time
	// does not, and resting for the wall time would leave a slot idle far
	// longer than the bound needs: logins would slow down for nothing.
	Share float64
	// Worker, if not nil, makes the command of a worker process (see
	// ServeWorker): each slot then hashes in a process of its own, started
	// here at a lower CPU priority (nice 10) and restarted when it dies. If nil,
	// hashes run in this process, on a thread of lowered priority: enough
	// for a command that hashes once, not for a server (see ServeWorker).
	Worker func() *exec.Cmd
	// Now is the clock that times hashes for Share (default time.Now).
	Now func() time.Time
	// Tracer, if not nil, records a span for each hash and verification,
	// from the wait for a slot to the worker's answer.
	Tracer trace.Tracer
}

// DefaultShare is the default Options.Share. Measured on two cores (the
// login-flood scenario of make bench), a core kept busy by hashing, even
// at idle priority, doubles the 99th percentile latency of proxied
// requests on the other; with each slot resting as long as it hashed, the
// flood costs their p99 a small fraction instead, and logins still pass
// at about twenty per second per slot.
const DefaultShare = 0.5

// DefaultConcurrency is how many hashes run at once unless Options says
// otherwise: half the CPUs the process may use (GOMAXPROCS, which follows
// a container's CPU limit), at least one.
func DefaultConcurrency() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// New returns a Hasher with its workers started.
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
	if opts.Share <= 0 || opts.Share > 1 {
		opts.Share = DefaultShare
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Hasher{params: opts.Params, free: make(chan worker, opts.Concurrency), wait: opts.MaxWait,
		share: opts.Share, now: opts.Now, tracer: opts.Tracer}
	dummy, err := dummyHash(h.params)
	if err != nil {
		return nil, err
	}
	h.dummy = dummy
	for range opts.Concurrency {
		var w worker = inProcess{}
		if opts.Worker != nil {
			pw := &procWorker{command: opts.Worker}
			if err := pw.start(); err != nil {
				h.Close()
				return nil, err
			}
			w = pw
		}
		h.workers = append(h.workers, w)
		h.free <- w
	}
	return h, nil
}

// Close stops the worker processes, if any. Calls after Close fail.
func (h *Hasher) Close() {
	for _, w := range h.workers {
		w.close()
	}
}

// Hash returns an encoded argon2id hash of pw in the PHC string format.
func (h *Hasher) Hash(ctx context.Context, pw string) (string, error) {
	resp, err := h.do(ctx, request{Op: opHash, Password: pw, Params: h.params})
	return resp.Hash, err
}

// Verify reports whether pw matches encoded, in any format that Check
// accepts. An empty encoded (unknown account) is checked against a dummy
// hash with the same cost, so that the time a login takes does not tell
// whether the account exists. (A legacy hash takes its own format's time:
// that an account was imported and has not logged in since can show, until
// its first login upgrades it.)
func (h *Hasher) Verify(ctx context.Context, pw, encoded string) (bool, error) {
	req := request{Op: opVerify, Password: pw, Hash: encoded}
	if encoded == "" {
		req.Hash = h.dummy
	} else if err := Check(encoded); err != nil {
		// Refused here, before a slot is taken: a worker only ever gets
		// hashes that this process can read.
		return false, err
	}
	resp, err := h.do(ctx, req)
	return resp.OK && encoded != "", err
}

// do runs req on a free worker.
func (h *Hasher) do(ctx context.Context, req request) (response, error) {
	if h.tracer != nil {
		return h.traced(ctx, req)
	}
	return h.run(ctx, req)
}

// traced is do in a span.
func (h *Hasher) traced(ctx context.Context, req request) (response, error) {
	ctx, span := h.tracer.Start(ctx, "password."+req.Op,
		trace.WithAttributes(attribute.Int("authsidecar.hash.slots_busy", h.Busy()), attribute.Int("authsidecar.hash.queued", h.Queued())))
	defer span.End()
	resp, err := h.run(ctx, req)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "hashing failed")
	}
	return resp, err
}

// run is do without a span.
func (h *Hasher) run(ctx context.Context, req request) (response, error) {
	w, err := h.acquire(ctx)
	if err != nil {
		return response{}, err
	}
	start := h.now()
	resp, err := w.run(req)
	if err != nil {
		// No rest: whatever failed (a worker killed, hung and replaced)
		// did not take a hash's worth of CPU, and its time says nothing.
		h.release(w, 0)
		return response{}, err
	}
	h.release(w, rest(h.now().Sub(start), resp.CPU, h.share))
	if resp.Error != "" {
		return response{}, fmt.Errorf("password hashing: %s", resp.Error)
	}
	return resp, nil
}

func (h *Hasher) acquire(ctx context.Context) (worker, error) {
	select {
	case w := <-h.free:
		return w, nil
	default:
	}
	h.queued.Add(1)
	defer h.queued.Add(-1)
	t := time.NewTimer(h.wait)
	defer t.Stop()
	select {
	case w := <-h.free:
		return w, nil
	case <-t.C:
		return nil, fmt.Errorf("password hashing: all %d slots taken: %w", cap(h.free), auth.ErrBusy)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Slots is how many hashes may run at once.
func (h *Hasher) Slots() int { return cap(h.free) }

// Busy is how many slots are taken: hashing, or resting after a hash (see
// Options.Share).
func (h *Hasher) Busy() int { return cap(h.free) - len(h.free) }

// Queued is how many calls wait for a free slot.
func (h *Hasher) Queued() int { return int(h.queued.Load()) }

// rest is how long a slot stays closed after a hash that took cpu of CPU
// time (0: unknown) in wall of wall time, so that over the hash and its
// rest the slot kept at most share of a core busy (see Options.Share).
func rest(wall, cpu time.Duration, share float64) time.Duration {
	if cpu <= 0 {
		cpu = wall
	}
	return max(0, time.Duration(float64(cpu)/share)-wall)
}

// release returns w to the free list once it has rested for d. The caller
// does not wait for that.
func (h *Hasher) release(w worker, d time.Duration) {
	if d <= 0 {
		h.free <- w
		return
	}
	time.AfterFunc(d, func() { h.free <- w })
}

// compute does the work of one request; it runs in a worker.
func compute(req request) response {
	switch req.Op {
	case opHash:
		enc, err := hash([]byte(req.Password), req.Params)
		if err != nil {
			return response{Error: err.Error()}
		}
		return response{Hash: enc}
	case opVerify:
		ok, err := verify([]byte(req.Password), req.Hash)
		if err != nil {
			return response{Error: err.Error()}
		}
		return response{OK: ok}
	default:
		return response{Error: fmt.Sprintf("unknown operation %q", req.Op)}
	}
}

func hash(pw []byte, p Params) (string, error) {
	if !p.inBounds() {
		return "", fmt.Errorf("argon2id parameters out of range: %+v", p)
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	return encode(p, salt, argon2.IDKey(pw, salt, p.Time, p.Memory, p.Threads, keyLen)), nil
}

// dummyHash is the hash an unknown account is checked against: random salt
// and random key in the format and at the cost of a real hash, so that
// checking it takes what checking a real one takes. It is the hash of no
// password (no input yields a random key), and Verify never reports it
// matched anyway. Made without hashing: every server start and every
// command that hashes once would otherwise pay a hash for nothing.
func dummyHash(p Params) (string, error) {
	if !p.inBounds() {
		return "", fmt.Errorf("argon2id parameters out of range: %+v", p)
	}
	b := make([]byte, saltLen+keyLen)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("dummy hash: %w", err)
	}
	return encode(p, b[:saltLen], b[saltLen:]), nil
}

// inBounds reports whether p is within the bounds this package hashes
// and verifies at (maxMemory, maxTime, maxThreads), none of them zero.
func (p Params) inBounds() bool {
	return p.Memory > 0 && p.Memory <= maxMemory && p.Time > 0 && p.Time <= maxTime && p.Threads > 0 && p.Threads <= maxThreads
}

// encode writes an argon2id hash in the PHC string format.
func encode(p Params, salt, key []byte) string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// verify is what a worker does for Verify: parse encoded again (the
// worker trusts nothing it is sent) and compute its format's hash.
func verify(pw []byte, encoded string) (bool, error) {
	v, err := parse(encoded)
	if err != nil {
		return false, err
	}
	return v.matches(pw)
}

func verifyArgon2id(pw []byte, p Params, salt, key []byte) bool {
	got := argon2.IDKey(pw, salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1
}

// decode parses a PHC argon2id string: this package's own format, and the
// one argon2-cffi (so Django) writes.
func decode(encoded string) (Params, []byte, []byte, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return Params{}, nil, nil, fmt.Errorf("%w: argon2id: %d fields, want $argon2id$v=19$m=,t=,p=$salt$hash", ErrMalformedHash, len(parts)-1)
	}
	if parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return Params{}, nil, nil, fmt.Errorf("%w: argon2id: version %q, want v=%d", ErrMalformedHash, parts[2], argon2.Version)
	}
	var p Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil ||
		fmt.Sprintf("m=%d,t=%d,p=%d", p.Memory, p.Time, p.Threads) != parts[3] {
		return Params{}, nil, nil, fmt.Errorf("%w: argon2id: parameters %q, want m=<KiB>,t=<passes>,p=<lanes>", ErrMalformedHash, parts[3])
	}
	if !p.inBounds() {
		return Params{}, nil, nil, fmt.Errorf("%w: argon2id: parameters %s out of range (m 1..%d KiB, t 1..%d, p 1..%d)",
			ErrMalformedHash, parts[3], maxMemory, maxTime, maxThreads)
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return Params{}, nil, nil, fmt.Errorf("%w: argon2id: salt is not unpadded base64 of at least 8 bytes", ErrMalformedHash)
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return Params{}, nil, nil, fmt.Errorf("%w: argon2id: hash is not unpadded base64 of 16 to 64 bytes", ErrMalformedHash)
	}
	return p, salt, key, nil
}
