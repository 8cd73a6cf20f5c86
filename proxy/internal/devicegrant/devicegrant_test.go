package devicegrant_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/authsidecar/authsidecar/internal/testkit"
	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/devicegrant"
	"github.com/authsidecar/authsidecar/proxy/internal/identity"
	"github.com/authsidecar/authsidecar/proxy/internal/login"
	"github.com/authsidecar/authsidecar/proxy/internal/password"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
	"github.com/authsidecar/authsidecar/proxy/internal/sqlite"
	"github.com/authsidecar/authsidecar/proxy/internal/store"
	"github.com/authsidecar/authsidecar/proxy/internal/token"
)

// fixture is the grant on a real store, with the login use case and the
// session manager the proxy wires it with, on a clock the test moves.
type fixture struct {
	t        *testing.T
	store    store.Store
	dbURL    string // PostgreSQL only
	clock    *testkit.Clock
	ids      *identity.Service
	sessions *session.Manager
	logins   *login.Service
	grant    *devicegrant.Service
}

// wait is how long a test lets a poll that must be answered take: long
// enough for any busy machine, and a poll not woken would take far longer
// (its hold is an hour).
const wait = 30 * time.Second

func newPostgresFixture(t *testing.T, cfg devicegrant.Config) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{t: t, dbURL: testkit.URL(t)}
	pool, err := postgres.Open(ctx, f.dbURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	m, err := postgres.NewMigrator(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	f.store = postgres.NewStore(pool)
	f.wire(cfg)
	return f
}

func newSQLiteFixture(t *testing.T, cfg devicegrant.Config) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	m, err := sqlite.NewMigrator(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, store: st}
	f.wire(cfg)
	return f
}

func (f *fixture) wire(cfg devicegrant.Config) {
	t := f.t
	key, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	f.clock = testkit.NewClock(time.Time{})
	signer, err := token.New([]token.Key{key}, token.Options{Issuer: "test", Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := password.New(password.Options{Params: password.Params{Memory: 64, Time: 1, Threads: 1}, Share: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hasher.Close)
	log := zaptest.NewLogger(t)
	f.ids = identity.New(f.store, hasher, identity.Lockout{MaxFailures: 3, Duration: time.Minute}, f.clock.Now, log)
	f.sessions = session.NewManager(f.store, signer, session.Config{TTL: time.Hour, MaxAge: 2 * time.Hour}, f.clock.Now, log)
	f.logins = login.New(f.ids, f.sessions, nil, log)
	f.grant = f.replica(cfg)
}

// replica is another Service on the same store, as another proxy process
// would run it.
func (f *fixture) replica(cfg devicegrant.Config) *devicegrant.Service {
	return devicegrant.New(f.store, f.logins, f.sessions, cfg, f.clock.Now, zaptest.NewLogger(f.t))
}

func (f *fixture) addUser(device, username, pin string) {
	f.t.Helper()
	if _, err := f.ids.AddUser(context.Background(), device, username, pin, false); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) start(device string) devicegrant.Authorization {
	f.t.Helper()
	a, err := f.grant.Start(context.Background(), device, session.Client{Addr: "192.0.2.50", UserAgent: "headset/1"})
	if err != nil {
		f.t.Fatal(err)
	}
	return a
}

func (f *fixture) approve(userCode, username, pin string) (devicegrant.Approved, error) {
	return f.grant.Approve(context.Background(), devicegrant.Approval{UserCode: userCode, Username: username, Password: pin, ClientAddr: "198.51.100.1"})
}

func (f *fixture) events(typ auth.EventType) []auth.Event {
	f.t.Helper()
	evs, err := f.store.ListEvents(context.Background(), auth.EventFilter{Type: typ})
	if err != nil {
		f.t.Fatal(err)
	}
	return evs
}

// quick keeps polls short where a test wants the pending answer.
var quick = devicegrant.Config{MaxHold: time.Millisecond}

// poll polls once and returns the error, or nil with the session.
func (f *fixture) poll(svc *devicegrant.Service, deviceCode string) (session.Issued, error) {
	return svc.Poll(context.Background(), deviceCode, "")
}

func TestStartIssuesCodes(t *testing.T) {
	t.Parallel()
	f := newPostgresFixture(t, devicegrant.Config{})
	a := f.start("HS-1")
	if len(a.UserCode) != 9 || a.UserCode[4] != '-' || strings.Trim(strings.Replace(a.UserCode, "-", "", 1), devicegrant.UserCodeAlphabet) != "" {
		t.Fatalf("user code %q: want XXXX-XXXX of %s", a.UserCode, devicegrant.UserCodeAlphabet)
	}
	if len(a.DeviceCode) < 43 || a.ExpiresIn != 10*time.Minute || a.Interval != 5*time.Second {
		t.Fatalf("authorization %+v: want a 256-bit device code, 10m, 5s", a)
	}
	// The store knows the request by its user code, and not the device code.
	c, err := f.store.DeviceCodeByUserCode(context.Background(), strings.Replace(a.UserCode, "-", "", 1))
	if err != nil {
		t.Fatal(err)
	}
	if c.DeviceID != "HS-1" || c.CodeHash == a.DeviceCode || strings.Contains(c.CodeHash, a.DeviceCode) ||
		c.ClientAddr != "192.0.2.50" || !c.ExpiresAt.Equal(testkit.T0.Add(10*time.Minute)) {
		t.Fatalf("stored %+v", c)
	}
	for _, bad := range []string{"", strings.Repeat("x", 300), "a\x00b"} {
		if _, err := f.grant.Start(context.Background(), bad, session.Client{}); !errors.Is(err, auth.ErrInvalidInput) {
			t.Errorf("device id %q: %v, want ErrInvalidInput", bad, err)
		}
	}
}

// The whole flow: approved with the user's PIN, the device's poll gets a
// session of that user on that device — once — and the audit trail says
// who approved it.
func TestApproveThenPoll(t *testing.T) {
	t.Parallel()
	f := newPostgresFixture(t, quick)
	f.addUser("HS-1", "1111", "4321")
	a := f.start("HS-1")
	if _, err := f.poll(f.grant, a.DeviceCode); !errors.Is(err, devicegrant.ErrAuthorizationPending) {
		t.Fatalf("before approval: %v, want authorization_pending", err)
	}
	// The user code as people type it: lower case, no dash.
	ok, err := f.approve(strings.ToLower(strings.Replace(a.UserCode, "-", "", 1)), "1111", "4321")
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(5 * time.Second)
	issued, err := f.poll(f.grant, a.DeviceCode)
	if err != nil {
		t.Fatalf("after approval: %v", err)
	}
	if issued.Session.ID != ok.SessionID || issued.Session.DeviceID != "HS-1" || issued.Session.Username != "1111" ||
		!issued.Session.ExpiresAt.Equal(testkit.T0.Add(time.Hour)) {
		t.Fatalf("issued %+v, approved %+v", issued.Session, ok)
	}
	c, err := f.sessions.Authenticate(context.Background(), issued.Token)
	if err != nil || c.Session.ID != ok.SessionID || c.Session.Username != "1111" || c.Session.ClientAddr != "192.0.2.50" {
		t.Fatalf("the token: %+v, %v; want a live session of 1111 with the headset's address", c.Session, err)
	}
	// One session per device code.
	f.clock.Advance(5 * time.Second)
	if _, err := f.poll(f.grant, a.DeviceCode); !errors.Is(err, devicegrant.ErrInvalidGrant) {
		t.Fatalf("second redeem: %v, want invalid_grant", err)
	}
	evs := f.events(auth.EventDeviceApproved)
	if len(evs) != 1 || evs[0].By != "1111" || evs[0].SessionID != ok.SessionID || evs[0].DeviceID != "HS-1" ||
		evs[0].Username != "1111" || evs[0].ClientAddr != "198.51.100.1" {
		t.Fatalf("device_approved events: %+v", evs)
	}
	if len(f.events(auth.EventLogin)) != 1 {
		t.Fatal("the approval's session was not started as a login")
	}
	// What waits in the store is not the token.
	st, err := f.store.DeviceCodeByUserCode(context.Background(), strings.Replace(a.UserCode, "-", "", 1))
	if err != nil || st.SealedToken != nil || st.Status != auth.DeviceCodeRedeemed {
		t.Fatalf("after redeem: %+v, %v", st, err)
	}
}

// A poll sooner than the interval is slow_down, and each one adds 5 s to
// the request's interval (RFC 8628 §3.5); a poll that waited it is not.
func TestSlowDown(t *testing.T) {
	t.Parallel()
	f := newPostgresFixture(t, quick)
	a := f.start("HS-1")
	if _, err := f.poll(f.grant, a.DeviceCode); !errors.Is(err, devicegrant.ErrAuthorizationPending) {
		t.Fatalf("first poll: %v", err)
	}
	f.clock.Advance(4 * time.Second)
	if _, err := f.poll(f.grant, a.DeviceCode); !errors.Is(err, devicegrant.ErrSlowDown) {
		t.Fatalf("after 4 s of a 5 s interval: %v, want slow_down", err)
	}
	// Now 10 s from the last poll.
	f.clock.Advance(9 * time.Second)
	if _, err := f.poll(f.grant, a.DeviceCode); !errors.Is(err, devicegrant.ErrSlowDown) {
		t.Fatalf("after 9 s of a 10 s interval: %v, want slow_down", err)
	}
	f.clock.Advance(15 * time.Second)
	if _, err := f.poll(f.grant, a.DeviceCode); !errors.Is(err, devicegrant.ErrAuthorizationPending) {
		t.Fatalf("after 15 s of a 15 s interval: %v, want authorization_pending", err)
	}
	c, err := f.store.DeviceCodeByUserCode(context.Background(), strings.Replace(a.UserCode, "-", "", 1))
	if err != nil || c.Interval != 15*time.Second {
		t.Fatalf("interval %v, %v; want 15s", c.Interval, err)
	}
}

func TestDeny(t *testing.T) {
	t.Parallel()
	f := newPostgresFixture(t, quick)
	f.addUser("HS-1", "1111", "4321")
	a := f.start("HS-1")
	if err := f.grant.Deny(context.Background(), a.UserCode, "198.51.100.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.poll(f.grant, a.DeviceCode); !errors.Is(err, devicegrant.ErrAccessDenied) {
		t.Fatalf("poll after deny: %v, want access_denied", err)
	}
	if _, err := f.approve(a.UserCode, "1111", "4321"); !errors.Is(err, devicegrant.ErrAlreadyDecided) {
		t.Fatalf("approve after deny: %v, want ErrAlreadyDecided", err)
	}
	if err := f.grant.Deny(context.Background(), a.UserCode, "198.51.100.1"); !errors.Is(err, devicegrant.ErrAlreadyDecided) {
		t.Fatalf("deny twice: %v", err)
	}
	if evs := f.events(auth.EventDeviceDenied); len(evs) != 1 || evs[0].DeviceID != "HS-1" || evs[0].By != "anonymous" || evs[0].ClientAddr != "198.51.100.1" {
		t.Fatalf("device_denied events: %+v", evs)
	}
	if n := len(f.events(auth.EventLogin)); n != 0 {
		t.Fatalf("%d logins after a denial", n)
	}
}

func TestExpired(t *testing.T) {
	t.Parallel()
	f := newPostgresFixture(t, quick)
	f.addUser("HS-1", "1111", "4321")
	a := f.start("HS-1")
	f.clock.Advance(10 * time.Minute)
	if _, err := f.poll(f.grant, a.DeviceCode); !errors.Is(err, devicegrant.ErrExpiredToken) {
		t.Fatalf("poll after expiry: %v, want expired_token", err)
	}
	if _, err := f.approve(a.UserCode, "1111", "4321"); !errors.Is(err, devicegrant.ErrUnknownUserCode) {
		t.Fatalf("approve after expiry: %v, want ErrUnknownUserCode", err)
	}
	if n := len(f.events(auth.EventLogin)); n != 0 {
		t.Fatalf("%d logins for an expired request", n)
	}
}

// An approval given in time is redeemed even when the device polls after
// the request's expiry: the session exists, and was approved.
func TestApprovedRedeemedAfterExpiry(t *testing.T) {
	t.Parallel()
	f := newPostgresFixture(t, quick)
	f.addUser("HS-1", "1111", "4321")
	a := f.start("HS-1")
	if _, err := f.approve(a.UserCode, "1111", "4321"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(11 * time.Minute)
	if _, err := f.poll(f.grant, a.DeviceCode); err != nil {
		t.Fatalf("poll: %v", err)
	}
}

// A wrong PIN, and a user of another device, are refused alike, counted
// toward the account's lockout, and leave the request pending.
func TestApproveWrongCredentials(t *testing.T) {
	t.Parallel()
	f := newPostgresFixture(t, quick)
	f.addUser("HS-1", "1111", "4321")
	f.addUser("HS-2", "2222", "4321")
	a := f.start("HS-1")
	if _, err := f.approve(a.UserCode, "2222", "4321"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("user of another device: %v, want ErrInvalidCredentials", err)
	}
	for i := range 3 {
		if _, err := f.approve(a.UserCode, "1111", "0000"); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("wrong PIN %d: %v", i+1, err)
		}
	}
	var locked *auth.LockedOutError
	if _, err := f.approve(a.UserCode, "1111", "4321"); !errors.As(err, &locked) {
		t.Fatalf("right PIN after 3 wrong ones: %v, want the account locked", err)
	}
	if got := len(f.events(auth.EventLoginFailed)); got < 4 {
		t.Fatalf("%d login_failed events, want the wrong PINs and the other device's user recorded", got)
	}
	f.clock.Advance(time.Minute)
	if _, err := f.approve(a.UserCode, "1111", "4321"); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
}

// Unknown user codes are counted per client address; past the limit
// nothing is looked up until the window ends. Right codes do not count.
func TestGuessLimit(t *testing.T) {
	t.Parallel()
	f := newPostgresFixture(t, devicegrant.Config{MaxHold: time.Millisecond, MaxGuesses: 3})
	a := f.start("HS-1")
	for range 5 {
		if _, err := f.grant.Lookup(context.Background(), a.UserCode, "203.0.113.1"); err != nil {
			t.Fatalf("right code: %v", err)
		}
	}
	wrong := "ZZZZ-ZZZZ"
	if strings.Replace(a.UserCode, "-", "", 1) == "ZZZZZZZZ" {
		wrong = "XXXX-XXXX"
	}
	for i := range 3 {
		if err := f.grant.Deny(context.Background(), wrong, "203.0.113.1"); !errors.Is(err, devicegrant.ErrUnknownUserCode) {
			t.Fatalf("unknown code %d: %v", i+1, err)
		}
	}
	var limited *devicegrant.GuessLimitError
	if _, err := f.grant.Lookup(context.Background(), a.UserCode, "203.0.113.1"); !errors.As(err, &limited) || limited.RetryAfter != time.Minute {
		t.Fatalf("past the limit, even a right code: %v, want refused for 1m", err)
	}
	if _, err := f.grant.Lookup(context.Background(), a.UserCode, "203.0.113.2"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	// Malformed codes cannot be guesses: refused as such, not counted.
	if _, err := f.grant.Lookup(context.Background(), "AEIO-UAEI", "203.0.113.2"); !errors.Is(err, auth.ErrInvalidInput) {
		t.Fatalf("a code of vowels: %v, want ErrInvalidInput", err)
	}
	f.clock.Advance(time.Minute)
	if _, err := f.grant.Lookup(context.Background(), a.UserCode, "203.0.113.1"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

// A device code is the device's: another device's client_id, an unknown
// code, and a session ended before the device received it are
// invalid_grant.
func TestInvalidGrant(t *testing.T) {
	t.Parallel()
	f := newPostgresFixture(t, quick)
	f.addUser("HS-1", "1111", "4321")
	a := f.start("HS-1")
	if _, err := f.grant.Poll(context.Background(), a.DeviceCode, "HS-2"); !errors.Is(err, devicegrant.ErrInvalidGrant) {
		t.Fatalf("another device's client_id: %v", err)
	}
	if _, err := f.grant.Poll(context.Background(), a.DeviceCode+"x", ""); !errors.Is(err, devicegrant.ErrInvalidGrant) {
		t.Fatalf("unknown device code: %v", err)
	}
	if _, err := f.grant.Poll(context.Background(), "", ""); !errors.Is(err, auth.ErrInvalidInput) {
		t.Fatalf("no device code: %v", err)
	}
	ok, err := f.approve(a.UserCode, "1111", "4321")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.sessions.RevokeDevice(context.Background(), "HS-1", "", "admin", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.grant.Poll(context.Background(), a.DeviceCode, "HS-1"); !errors.Is(err, devicegrant.ErrInvalidGrant) {
		t.Fatalf("session %s revoked before it was received: %v, want invalid_grant", ok.SessionID, err)
	}
}

// A poll held open on one replica is answered as soon as another approves:
// the store's notification wakes it. Its hold is an hour, so only the
// wake-up can answer it within the test's deadline.
func TestPollWokenByApprovalOnAnotherReplica(t *testing.T) {
	t.Parallel()
	long := devicegrant.Config{MaxHold: time.Hour, Interval: time.Hour}
	f := newPostgresFixture(t, long)
	f.addUser("HS-1", "1111", "4321")
	waiting := f.replica(long)
	up := make(chan bool, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	l := &postgres.Listener{URL: f.dbURL, Log: zaptest.NewLogger(t),
		Changed: func(payload string) {
			if id, ok := strings.CutPrefix(payload, devicegrant.NotifyPrefix); ok {
				waiting.Wake(id)
			}
		},
		State: func(ok bool) {
			if ok {
				select {
				case up <- true:
				default:
				}
			}
		}}
	go func() { defer close(done); l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-up:
	case <-time.After(wait):
		t.Fatal("listener did not come up")
	}

	a := f.start("HS-1")
	answer := make(chan error, 1)
	go func() {
		_, err := waiting.Poll(context.Background(), a.DeviceCode, "HS-1")
		answer <- err
	}()
	approveWhilePolled(t, f, waiting, a, answer)
}

// approveWhilePolled approves a's request (on f.grant) once a poll of it is
// recorded, and checks that the poll answers with a session.
func approveWhilePolled(t *testing.T, f *fixture, _ *devicegrant.Service, a devicegrant.Authorization, answer chan error) {
	t.Helper()
	code := strings.Replace(a.UserCode, "-", "", 1)
	deadline := time.Now().Add(wait)
	for {
		c, err := f.store.DeviceCodeByUserCode(context.Background(), code)
		if err != nil {
			t.Fatal(err)
		}
		if !c.LastPolledAt.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the poll was never recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := f.approve(a.UserCode, "1111", "4321"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-answer:
		if err != nil {
			t.Fatalf("held poll: %v, want the session", err)
		}
	case <-time.After(wait):
		t.Fatal("the held poll was not woken by the approval")
	}
}

// On the embedded store there is one process: the approval wakes the poll
// held in it directly.
func TestPollWokenInProcess(t *testing.T) {
	t.Parallel()
	long := devicegrant.Config{MaxHold: time.Hour, Interval: time.Hour}
	f := newSQLiteFixture(t, long)
	f.addUser("HS-1", "1111", "4321")
	a := f.start("HS-1")
	answer := make(chan error, 1)
	go func() {
		_, err := f.grant.Poll(context.Background(), a.DeviceCode, "")
		answer <- err
	}()
	approveWhilePolled(t, f, f.grant, a, answer)
}

// A denial wakes the held poll too, with access_denied; a poll whose
// client goes away ends with it.
func TestHeldPollDeniedAndCanceled(t *testing.T) {
	t.Parallel()
	long := devicegrant.Config{MaxHold: time.Hour, Interval: time.Hour}
	f := newSQLiteFixture(t, long)
	a := f.start("HS-1")
	answer := make(chan error, 1)
	go func() {
		_, err := f.grant.Poll(context.Background(), a.DeviceCode, "")
		answer <- err
	}()
	code := strings.Replace(a.UserCode, "-", "", 1)
	for deadline := time.Now().Add(wait); ; time.Sleep(10 * time.Millisecond) {
		c, err := f.store.DeviceCodeByUserCode(context.Background(), code)
		if err != nil {
			t.Fatal(err)
		}
		if !c.LastPolledAt.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the poll was never recorded")
		}
	}
	if err := f.grant.Deny(context.Background(), a.UserCode, "198.51.100.1"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-answer:
		if !errors.Is(err, devicegrant.ErrAccessDenied) {
			t.Fatalf("held poll: %v, want access_denied", err)
		}
	case <-time.After(wait):
		t.Fatal("the held poll was not woken by the denial")
	}

	b := f.start("HS-1")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, err := f.grant.Poll(ctx, b.DeviceCode, "")
		answer <- err
	}()
	cancel()
	select {
	case err := <-answer:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled poll: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("a canceled poll kept waiting")
	}
}

// The janitor's part deletes requests an hour past their expiry (late
// polls meanwhile hear expired_token) and ended guess windows.
func TestCleanup(t *testing.T) {
	t.Parallel()
	f := newSQLiteFixture(t, quick)
	a := f.start("HS-1")
	// A guess (unless the request's code is that one): a window of guesses.
	_, _ = f.grant.Lookup(context.Background(), "ZZZZ-ZZZZ", "203.0.113.1")
	f.clock.Advance(10*time.Minute + devicegrant.ExpiredKeep - time.Second)
	if _, err := f.poll(f.grant, a.DeviceCode); !errors.Is(err, devicegrant.ErrExpiredToken) {
		t.Fatalf("late poll: %v, want expired_token", err)
	}
	n, err := f.grant.Cleanup(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("cleanup = %d, %v; want the guess window only", n, err)
	}
	f.clock.Advance(2 * time.Second)
	if n, err := f.grant.Cleanup(context.Background()); err != nil || n != 1 {
		t.Fatalf("cleanup = %d, %v; want the expired request", n, err)
	}
	if _, err := f.poll(f.grant, a.DeviceCode); !errors.Is(err, devicegrant.ErrInvalidGrant) {
		t.Fatalf("poll of a deleted request: %v, want invalid_grant", err)
	}
}
