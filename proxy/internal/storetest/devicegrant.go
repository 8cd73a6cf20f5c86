package storetest

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

var deviceGrantTests = []test{
	{"DeviceCodeRoundTrip", testDeviceCodeRoundTrip},
	{"DeviceCodeUserCodeUniqueAmongLive", testDeviceCodeUserCodeUnique},
	{"DeviceCodePollIsCompareAndSet", testDeviceCodePoll},
	{"DeviceCodeDecideOnceWithEvent", testDeviceCodeDecide},
	{"DeviceCodeDecideExpired", testDeviceCodeDecideExpired},
	{"DeviceCodeRedeemOnce", testDeviceCodeRedeemOnce},
	{"DeviceCodeRedeemConcurrent", testDeviceCodeRedeemConcurrent},
	{"DeviceGuessesWindow", testDeviceGuessesWindow},
	{"DeviceGuessesConcurrent", testDeviceGuessesConcurrent},
	{"DeviceGrantCleanup", testDeviceGrantCleanup},
}

var deviceCodeSeq atomic.Int64

// newDeviceCode stores a pending request of device dev with userCode,
// created at created and expiring ttl later.
func newDeviceCode(t *testing.T, s Store, dev, userCode string, created time.Time, ttl time.Duration) auth.DeviceCode {
	t.Helper()
	n := strconv.FormatInt(deviceCodeSeq.Add(1), 10)
	c := auth.DeviceCode{
		ID: "req-" + n, CodeHash: "hash-" + n, UserCode: userCode, DeviceID: dev,
		PublicKey: []byte{1, 2, 3, byte(len(n))}, ClientAddr: "192.0.2.9", UserAgent: "headset/1",
		CreatedAt: created, ExpiresAt: created.Add(ttl), Interval: 5 * time.Second, Status: auth.DeviceCodePending,
	}
	if err := s.CreateDeviceCode(context.Background(), c); err != nil {
		t.Fatalf("create device code: %v", err)
	}
	return c
}

func byHash(t *testing.T, s Store, hash string) auth.DeviceCode {
	t.Helper()
	c, err := s.DeviceCodeByHash(context.Background(), hash)
	if err != nil {
		t.Fatalf("device code by hash: %v", err)
	}
	return c
}

func approval(at time.Time, session string) auth.DeviceDecision {
	return auth.DeviceDecision{Status: auth.DeviceCodeApproved, At: at, SessionID: session, SealedToken: []byte("sealed " + session)}
}

// What is stored is read back as it was, times to the microsecond, by
// either code.
func testDeviceCodeRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	c := newDeviceCode(t, s, "dev", "BCDFGHJK", T0, 10*time.Minute)
	for name, get := range map[string]func() (auth.DeviceCode, error){
		"by hash":      func() (auth.DeviceCode, error) { return s.DeviceCodeByHash(ctx, c.CodeHash) },
		"by user code": func() (auth.DeviceCode, error) { return s.DeviceCodeByUserCode(ctx, c.UserCode) },
	} {
		got, err := get()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.ID != c.ID || got.CodeHash != c.CodeHash || got.UserCode != c.UserCode || got.DeviceID != c.DeviceID ||
			!bytes.Equal(got.PublicKey, c.PublicKey) || got.ClientAddr != c.ClientAddr || got.UserAgent != c.UserAgent ||
			!got.CreatedAt.Equal(T0) || !got.ExpiresAt.Equal(c.ExpiresAt) || got.Interval != 5*time.Second ||
			!got.LastPolledAt.IsZero() || got.Status != auth.DeviceCodePending || !got.DecidedAt.IsZero() ||
			got.SessionID != "" || got.SealedToken != nil {
			t.Fatalf("%s: %+v, want %+v", name, got, c)
		}
	}
	if _, err := s.DeviceCodeByHash(ctx, "no such hash"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("unknown hash: %v, want ErrNotFound", err)
	}
	if _, err := s.DeviceCodeByUserCode(ctx, "ZZZZZZZZ"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("unknown user code: %v, want ErrNotFound", err)
	}
}

// A user code belongs to one request while it lives; an expired request
// gives it up to the next one.
func testDeviceCodeUserCodeUnique(t *testing.T, s Store) {
	ctx := context.Background()
	old := newDeviceCode(t, s, "dev", "BCDFGHJK", T0, time.Minute)
	dup := auth.DeviceCode{ID: "other", CodeHash: "other-hash", UserCode: old.UserCode, DeviceID: "dev-2",
		PublicKey: []byte{9}, CreatedAt: T0.Add(59 * time.Second), ExpiresAt: T0.Add(time.Hour), Interval: 5 * time.Second,
		Status: auth.DeviceCodePending}
	if err := s.CreateDeviceCode(ctx, dup); !errors.Is(err, auth.ErrConflict) {
		t.Fatalf("user code of a live request: %v, want ErrConflict", err)
	}
	dup.CreatedAt = old.ExpiresAt
	if err := s.CreateDeviceCode(ctx, dup); err != nil {
		t.Fatalf("user code of an expired request: %v", err)
	}
	got, err := s.DeviceCodeByUserCode(ctx, old.UserCode)
	if err != nil || got.ID != "other" {
		t.Fatalf("the user code names %+v, %v; want the new request", got, err)
	}
	if _, err := s.DeviceCodeByHash(ctx, old.CodeHash); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("the expired request: %v, want it replaced", err)
	}
}

// A poll is recorded only over the last poll its caller saw: of two polls
// that saw the same one, one wins.
func testDeviceCodePoll(t *testing.T, s Store) {
	ctx := context.Background()
	c := newDeviceCode(t, s, "dev", "BCDFGHJK", T0, 10*time.Minute)
	at := T0.Add(time.Second)
	got, err := s.PollDeviceCode(ctx, c.ID, time.Time{}, at, 5*time.Second)
	if err != nil || !got.LastPolledAt.Equal(at) || got.Status != auth.DeviceCodePending {
		t.Fatalf("first poll: %+v, %v", got, err)
	}
	if _, err := s.PollDeviceCode(ctx, c.ID, time.Time{}, at, 5*time.Second); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("a poll over a stale last poll: %v, want ErrNotFound", err)
	}
	next := at.Add(2 * time.Second)
	got, err = s.PollDeviceCode(ctx, c.ID, got.LastPolledAt, next, 10*time.Second)
	if err != nil || !got.LastPolledAt.Equal(next) || got.Interval != 10*time.Second {
		t.Fatalf("second poll: %+v, %v; want the new interval", got, err)
	}
	if got := byHash(t, s, c.CodeHash); !got.LastPolledAt.Equal(next) || got.Interval != 10*time.Second {
		t.Fatalf("as stored: %+v", got)
	}
	if _, err := s.PollDeviceCode(ctx, "no such request", time.Time{}, at, 5*time.Second); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("unknown request: %v", err)
	}
}

// A request is decided once, and the decision's event is written with it;
// a decision that changes nothing writes none.
func testDeviceCodeDecide(t *testing.T, s Store) {
	ctx := context.Background()
	c := newDeviceCode(t, s, "dev", "BCDFGHJK", T0, 10*time.Minute)
	at := T0.Add(time.Minute)
	if err := s.DecideDeviceCode(rec(auth.EventDeviceApproved), c.ID, approval(at, "sess-1")); err != nil {
		t.Fatal(err)
	}
	got := byHash(t, s, c.CodeHash)
	if got.Status != auth.DeviceCodeApproved || !got.DecidedAt.Equal(at) || got.SessionID != "sess-1" ||
		string(got.SealedToken) != "sealed sess-1" {
		t.Fatalf("approved: %+v", got)
	}
	wantEvents(t, s, auth.EventDeviceApproved, 1)
	for _, d := range []auth.DeviceDecision{approval(at, "sess-2"), {Status: auth.DeviceCodeDenied, At: at}} {
		if err := s.DecideDeviceCode(rec(auth.EventDeviceDenied), c.ID, d); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("second decision %s: %v, want ErrNotFound", d.Status, err)
		}
	}
	wantEvents(t, s, auth.EventDeviceDenied, 0)
	if got := byHash(t, s, c.CodeHash); got.SessionID != "sess-1" {
		t.Fatalf("a second decision changed the first: %+v", got)
	}

	d := newDeviceCode(t, s, "dev", "CDFGHJKL", T0, 10*time.Minute)
	if err := s.DecideDeviceCode(rec(auth.EventDeviceDenied), d.ID, auth.DeviceDecision{Status: auth.DeviceCodeDenied, At: at}); err != nil {
		t.Fatal(err)
	}
	if got := byHash(t, s, d.CodeHash); got.Status != auth.DeviceCodeDenied || got.SealedToken != nil {
		t.Fatalf("denied: %+v", got)
	}
	wantEvents(t, s, auth.EventDeviceDenied, 1)
	if err := s.DecideDeviceCode(ctx, "no such request", approval(at, "x")); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("unknown request: %v", err)
	}
}

// Nothing decides a request after it expired.
func testDeviceCodeDecideExpired(t *testing.T, s Store) {
	c := newDeviceCode(t, s, "dev", "BCDFGHJK", T0, time.Minute)
	if err := s.DecideDeviceCode(rec(auth.EventDeviceApproved), c.ID, approval(c.ExpiresAt, "sess")); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("approval at expiry: %v, want ErrNotFound", err)
	}
	wantEvents(t, s, auth.EventDeviceApproved, 0)
	if got := byHash(t, s, c.CodeHash); got.Status != auth.DeviceCodePending {
		t.Fatalf("expired request changed: %+v", got)
	}
}

// An approval yields its sealed token once, and the store forgets it.
func testDeviceCodeRedeemOnce(t *testing.T, s Store) {
	ctx := context.Background()
	c := newDeviceCode(t, s, "dev", "BCDFGHJK", T0, 10*time.Minute)
	if _, err := s.RedeemDeviceCode(ctx, c.ID, T0); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("redeem a pending request: %v, want ErrNotFound", err)
	}
	if err := s.DecideDeviceCode(ctx, c.ID, approval(T0, "sess-1")); err != nil {
		t.Fatal(err)
	}
	sealed, err := s.RedeemDeviceCode(ctx, c.ID, T0)
	if err != nil || string(sealed) != "sealed sess-1" {
		t.Fatalf("redeem: %q, %v", sealed, err)
	}
	if got := byHash(t, s, c.CodeHash); got.Status != auth.DeviceCodeRedeemed || got.SealedToken != nil || got.SessionID != "sess-1" {
		t.Fatalf("redeemed: %+v; want the sealed token gone", got)
	}
	if _, err := s.RedeemDeviceCode(ctx, c.ID, T0); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("second redeem: %v, want ErrNotFound", err)
	}
}

// Of many polls that redeem one approval at once, exactly one gets it.
func testDeviceCodeRedeemConcurrent(t *testing.T, s Store) {
	ctx := context.Background()
	c := newDeviceCode(t, s, "dev", "BCDFGHJK", T0, 10*time.Minute)
	if err := s.DecideDeviceCode(ctx, c.ID, approval(T0, "sess-1")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var won, lost atomic.Int64
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := s.RedeemDeviceCode(ctx, c.ID, T0)
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, auth.ErrNotFound):
				lost.Add(1)
			default:
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if won.Load() != 1 || lost.Load() != 19 {
		t.Fatalf("%d redeemed, %d refused; want 1 and 19", won.Load(), lost.Load())
	}
}

// Guesses count per client address in a window that starts with the first
// one; past the limit nothing is counted and the window's end is told.
func testDeviceGuessesWindow(t *testing.T, s Store) {
	ctx := context.Background()
	reserveGuess := func(addr string, now time.Time) (bool, time.Time) {
		t.Helper()
		ok, ends, err := s.ReserveDeviceGuess(ctx, addr, now, time.Minute, 3)
		if err != nil {
			t.Fatal(err)
		}
		return ok, ends
	}
	for i := range 3 {
		if ok, _ := reserveGuess("192.0.2.1", T0.Add(time.Duration(i)*time.Second)); !ok {
			t.Fatalf("guess %d refused", i+1)
		}
	}
	ok, ends := reserveGuess("192.0.2.1", T0.Add(10*time.Second))
	if ok || !ends.Equal(T0.Add(time.Minute)) {
		t.Fatalf("fourth guess: %v, window ends %v; want refused until %v", ok, ends, T0.Add(time.Minute))
	}
	if ok, _ := reserveGuess("192.0.2.2", T0.Add(10*time.Second)); !ok {
		t.Fatal("another address shares the first one's count")
	}
	// A right code gives its guess back.
	if err := s.ReleaseDeviceGuess(ctx, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := reserveGuess("192.0.2.1", T0.Add(20*time.Second)); !ok {
		t.Fatal("a released guess was not given back")
	}
	if ok, _ := reserveGuess("192.0.2.1", T0.Add(30*time.Second)); ok {
		t.Fatal("past the limit again: counted")
	}
	// The window's end starts a new one.
	ok, ends = reserveGuess("192.0.2.1", T0.Add(time.Minute))
	if !ok || !ends.Equal(T0.Add(2*time.Minute)) {
		t.Fatalf("after the window: %v, ends %v; want a new window", ok, ends)
	}
}

// Parallel guesses (on any number of replicas) are counted one by one:
// exactly the limit get through.
func testDeviceGuessesConcurrent(t *testing.T, s Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	var allowed atomic.Int64
	errs := make(chan error, 25)
	for range 25 {
		wg.Go(func() {
			ok, _, err := s.ReserveDeviceGuess(ctx, "192.0.2.1", T0, time.Minute, 10)
			if err != nil {
				errs <- err
			}
			if ok {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := allowed.Load(); n != 10 {
		t.Fatalf("%d of 25 parallel guesses allowed, want 10", n)
	}
}

// The janitor's part: requests expired before a time, and guess windows
// started before a time.
func testDeviceGrantCleanup(t *testing.T, s Store) {
	ctx := context.Background()
	for i := range 5 {
		newDeviceCode(t, s, "dev", "BCDFGHJ"+string("KLMNP"[i]), T0.Add(time.Duration(i)*time.Minute), time.Minute)
	}
	live := newDeviceCode(t, s, "dev", "ZZZZZZZZ", T0, time.Hour)
	// Expired at T0+1m … T0+5m: the three before T0+3m30s go, two at a time.
	var total int64
	for {
		n, err := s.DeleteDeviceCodesExpiredBefore(ctx, T0.Add(3*time.Minute+30*time.Second), 2)
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if n < 2 {
			break
		}
	}
	if total != 3 || countRows(t, s, "device_codes") != 3 {
		t.Fatalf("deleted %d, %d left; want 3 and 3", total, countRows(t, s, "device_codes"))
	}
	byHash(t, s, live.CodeHash)

	for i, addr := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		if _, _, err := s.ReserveDeviceGuess(ctx, addr, T0.Add(time.Duration(i)*time.Minute), time.Minute, 10); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.DeleteDeviceGuessesBefore(ctx, T0.Add(90*time.Second), 10)
	if err != nil || n != 2 || countRows(t, s, "device_code_guesses") != 1 {
		t.Fatalf("guess windows deleted %d, %v; %d left; want 2 and 1", n, err, countRows(t, s, "device_code_guesses"))
	}
}
