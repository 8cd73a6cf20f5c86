package identity_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/identity"
	"github.com/authsidecar/authsidecar/proxy/internal/password"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
)

func TestAuthenticateRightPassword(t *testing.T) {
	t.Parallel()
	f := newFixture(t, lockout)
	u, err := f.login("1111")
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != f.user.ID || u.DeviceID != "dev" || u.Username != "1111" || u.IsAdmin {
		t.Fatalf("Authenticate = %+v, want %+v", u, f.user)
	}
}

func TestAuthenticateAdmin(t *testing.T) {
	t.Parallel()
	f := newFixture(t, lockout)
	ctx := context.Background()
	if _, err := f.svc.AddUser(ctx, "dev", "admin", "9999", true); err != nil {
		t.Fatal(err)
	}
	u, err := f.svc.Authenticate(ctx, "dev", "admin", "9999")
	if err != nil || !u.IsAdmin {
		t.Fatalf("admin login = %+v, %v", u, err)
	}
}

// Unknown device, unknown user and wrong password must not be told apart.
func TestAuthenticateFailuresLookAlike(t *testing.T) {
	t.Parallel()
	f := newFixture(t, lockout)
	ctx := context.Background()
	var msgs []string
	for _, c := range []struct{ name, device, user, pw string }{
		{"wrong password", "dev", "1111", "0000"},
		{"unknown user", "dev", "2222", "1111"},
		{"unknown device", "nodev", "1111", "1111"},
	} {
		u, err := f.svc.Authenticate(ctx, c.device, c.user, c.pw)
		if !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("%s: %v, want ErrInvalidCredentials", c.name, err)
		}
		if u != (auth.User{}) {
			t.Fatalf("%s: returned user %+v", c.name, u)
		}
		msgs = append(msgs, err.Error())
	}
	for _, m := range msgs[1:] {
		if m != msgs[0] {
			t.Fatalf("error texts differ: %q", msgs)
		}
	}
}

func TestLockoutAfterMaxFailures(t *testing.T) {
	t.Parallel()
	f := newFixture(t, lockout)
	// The MaxFailures-th failure still says invalid credentials ...
	f.fail(t, lockout.MaxFailures)
	// ... and then even the right password is refused, for Duration.
	_, err := f.login("1111")
	wantLocked(t, err, lockout.Duration)

	f.clock.Advance(20 * time.Second)
	_, err = f.login("1111")
	wantLocked(t, err, lockout.Duration-20*time.Second)
}

func TestLockoutDoublesOnSecondLockout(t *testing.T) {
	t.Parallel()
	f := newFixture(t, lockout)
	f.fail(t, lockout.MaxFailures)
	_, err := f.login("0000")
	wantLocked(t, err, time.Minute)

	f.clock.Advance(time.Minute)
	f.fail(t, lockout.MaxFailures)
	_, err = f.login("1111")
	wantLocked(t, err, 2*time.Minute)

	f.clock.Advance(2 * time.Minute)
	f.fail(t, lockout.MaxFailures)
	_, err = f.login("1111")
	wantLocked(t, err, 4*time.Minute)
}

func TestLockoutCappedAtMaxDuration(t *testing.T) {
	t.Parallel()
	pol := identity.Lockout{MaxFailures: 3, Duration: time.Minute, MaxDuration: 3 * time.Minute}
	f := newFixture(t, pol)
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 3 * time.Minute, 3 * time.Minute} {
		f.fail(t, pol.MaxFailures)
		_, err := f.login("1111")
		var locked *auth.LockedOutError
		if !errors.As(err, &locked) || locked.RetryAfter != want {
			t.Fatalf("lockout %d: %v, want a lockout of %v", i+1, err, want)
		}
		f.clock.Advance(want)
	}
}

// MaxDuration defaults to an hour.
func TestLockoutDefaultCapIsOneHour(t *testing.T) {
	t.Parallel()
	pol := identity.Lockout{MaxFailures: 1, Duration: 20 * time.Minute}
	f := newFixture(t, pol)
	for i, want := range []time.Duration{20 * time.Minute, 40 * time.Minute, time.Hour} {
		f.fail(t, 1)
		_, err := f.login("1111")
		var locked *auth.LockedOutError
		if !errors.As(err, &locked) || locked.RetryAfter != want {
			t.Fatalf("lockout %d: %v, want a lockout of %v", i+1, err, want)
		}
		f.clock.Advance(want)
	}
}

func TestLockoutExpires(t *testing.T) {
	t.Parallel()
	f := newFixture(t, lockout)
	f.fail(t, lockout.MaxFailures)
	_, err := f.login("1111")
	wantLocked(t, err, lockout.Duration)

	f.clock.Advance(lockout.Duration)
	if _, err := f.login("1111"); err != nil {
		t.Fatalf("right password after the lockout: %v", err)
	}
	// The success reset the count: MaxFailures-1 failures do not lock.
	f.fail(t, lockout.MaxFailures-1)
	if _, err := f.login("1111"); err != nil {
		t.Fatalf("after %d failures: %v", lockout.MaxFailures-1, err)
	}
	// And the lockout history: the next lockout is Duration again.
	f.fail(t, lockout.MaxFailures)
	_, err = f.login("1111")
	wantLocked(t, err, lockout.Duration)
}

// Failures must be consecutive: a success in between starts over.
func TestSuccessResetsFailures(t *testing.T) {
	t.Parallel()
	f := newFixture(t, lockout)
	f.fail(t, lockout.MaxFailures-1)
	if _, err := f.login("1111"); err != nil {
		t.Fatal(err)
	}
	f.fail(t, lockout.MaxFailures-1)
	if _, err := f.login("1111"); err != nil {
		t.Fatalf("%d failures, a success, %d failures: %v; want not locked",
			lockout.MaxFailures-1, lockout.MaxFailures-1, err)
	}
}

// A lockout must not reveal whether an account exists.
func TestUnknownAccountsLockTheSameWay(t *testing.T) {
	t.Parallel()
	f := newFixture(t, lockout)
	ctx := context.Background()
	for _, acct := range []struct{ device, user string }{{"dev", "nobody"}, {"nodev", "1111"}} {
		for i := range lockout.MaxFailures {
			if _, err := f.svc.Authenticate(ctx, acct.device, acct.user, "0000"); !errors.Is(err, auth.ErrInvalidCredentials) {
				t.Fatalf("%v attempt %d: %v", acct, i+1, err)
			}
		}
		_, err := f.svc.Authenticate(ctx, acct.device, acct.user, "0000")
		wantLocked(t, err, lockout.Duration)
	}
	// The real account on the device is not affected.
	if _, err := f.login("1111"); err != nil {
		t.Fatalf("known account after others locked: %v", err)
	}
}

// Counting happens in the database before the password is checked, so
// parallel guesses on two replicas get at most MaxFailures evaluated.
func TestParallelGuessesOnTwoReplicas(t *testing.T) {
	t.Parallel()
	raw := schemaURL(t, 16)
	c := newClock()
	var replicas []*identity.Service
	for range 2 {
		store := postgres.NewStore(openPool(t, raw))
		h := newHasher(t, password.Options{Concurrency: 8})
		replicas = append(replicas, identity.New(store, h, lockout, c.Now, zaptest.NewLogger(t)))
	}
	ctx := context.Background()
	if _, err := replicas[0].AddUser(ctx, "dev", "1111", "1111", false); err != nil {
		t.Fatal(err)
	}

	const n = 25
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = replicas[i%2].Authenticate(ctx, "dev", "1111", "0000")
		})
	}
	close(start)
	wg.Wait()

	evaluated, locked := 0, 0
	for _, err := range errs {
		var lo *auth.LockedOutError
		switch {
		case errors.Is(err, auth.ErrInvalidCredentials):
			evaluated++
		case errors.As(err, &lo):
			locked++
		default:
			t.Fatalf("unexpected result: %v", err)
		}
	}
	if evaluated > lockout.MaxFailures {
		t.Fatalf("%d guesses evaluated, want at most %d", evaluated, lockout.MaxFailures)
	}
	if evaluated+locked != n {
		t.Fatalf("%d evaluated + %d locked out != %d", evaluated, locked, n)
	}
	for i, r := range replicas {
		_, err := r.Authenticate(ctx, "dev", "1111", "1111")
		var lo *auth.LockedOutError
		if !errors.As(err, &lo) {
			t.Fatalf("replica %d: right password after the flood: %v, want a lockout", i, err)
		}
	}
}

func TestUnlockEndsLockout(t *testing.T) {
	t.Parallel()
	f := newFixture(t, lockout)
	f.fail(t, lockout.MaxFailures)
	_, err := f.login("1111")
	wantLocked(t, err, lockout.Duration)

	if err := f.svc.Unlock(context.Background(), "dev", "1111"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.login("1111"); err != nil {
		t.Fatalf("right password after Unlock: %v", err)
	}
	// Unlocking an account that was never counted is fine.
	if err := f.svc.Unlock(context.Background(), "dev", "never"); err != nil {
		t.Fatal(err)
	}
}

func TestAddUserValidation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, lockout)
	ctx := context.Background()
	long := strings.Repeat("a", identity.MaxNameLen+1)
	for _, c := range []struct{ name, device, user, pw string }{
		{"empty device", "", "u", "pw"},
		{"empty username", "dev", "", "pw"},
		{"empty password", "dev", "u", ""},
		{"control character in device", "dev\n", "u", "pw"},
		{"control character in username", "dev", "u\x00", "pw"},
		{"escape in username", "dev", "u\x1b[31m", "pw"},
		{"invalid UTF-8", "dev", "u\xff", "pw"},
		{"long device", long, "u", "pw"},
		{"long username", "dev", long, "pw"},
		{"long password", "dev", "u", strings.Repeat("p", 1025)},
	} {
		if _, err := f.svc.AddUser(ctx, c.device, c.user, c.pw, false); !errors.Is(err, auth.ErrInvalidInput) {
			t.Errorf("AddUser with %s: %v, want ErrInvalidInput", c.name, err)
		} else if _, ok := auth.PublicMessage(err); !ok {
			t.Errorf("AddUser with %s: %v carries no public message", c.name, err)
		}
		if _, err := f.svc.SetPassword(ctx, c.device, c.user, c.pw); !errors.Is(err, auth.ErrInvalidInput) {
			t.Errorf("SetPassword with %s: %v, want ErrInvalidInput", c.name, err)
		}
	}
	users, err := f.svc.ListUsers(ctx, "")
	if err != nil || len(users) != 1 {
		t.Fatalf("after invalid AddUsers: %d users, %v; want only the fixture's", len(users), err)
	}
	// The longest valid name is accepted.
	if _, err := f.svc.AddUser(ctx, "dev", long[:identity.MaxNameLen], "pw", false); err != nil {
		t.Fatalf("a name of MaxNameLen bytes: %v", err)
	}
}

func TestAddUserDuplicateIsConflict(t *testing.T) {
	t.Parallel()
	f := newFixture(t, lockout)
	if _, err := f.svc.AddUser(context.Background(), "dev", "1111", "x", false); !errors.Is(err, auth.ErrConflict) {
		t.Fatalf("duplicate AddUser: %v, want ErrConflict", err)
	}
}

func TestSetPasswordChangesPasswordAndRevokesSessions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, lockout)
	ctx := context.Background()
	now := f.clock.Now()
	sess := auth.Session{ID: "s1", DeviceID: "dev", UserID: f.user.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := f.store.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	n, err := f.svc.SetPassword(ctx, "dev", "1111", "4321")
	if err != nil || n != 1 {
		t.Fatalf("SetPassword = %d, %v; want 1 session revoked", n, err)
	}
	if got, _ := f.store.Session(ctx, "s1"); got.RevokedAt.IsZero() {
		t.Fatal("session not revoked by the password change")
	}
	if _, err := f.login("1111"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("old password: %v, want ErrInvalidCredentials", err)
	}
	if _, err := f.login("4321"); err != nil {
		t.Fatalf("new password: %v", err)
	}
	if _, err := f.svc.SetPassword(ctx, "dev", "nobody", "x"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("SetPassword of an unknown user: %v, want ErrNotFound", err)
	}
}

func TestRemoveUser(t *testing.T) {
	t.Parallel()
	f := newFixture(t, lockout)
	ctx := context.Background()
	now := f.clock.Now()
	if err := f.store.CreateSession(ctx, auth.Session{ID: "s1", DeviceID: "dev", UserID: f.user.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	n, err := f.svc.RemoveUser(ctx, "dev", "1111")
	if err != nil || n != 1 {
		t.Fatalf("RemoveUser = %d, %v; want 1", n, err)
	}
	if _, err := f.login("1111"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("login of a removed user: %v, want ErrInvalidCredentials", err)
	}
	if _, err := f.svc.RemoveUser(ctx, "dev", "1111"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("removing twice: %v, want ErrNotFound", err)
	}
}

func TestForgetStaleFailures(t *testing.T) {
	t.Parallel()
	f := newFixture(t, lockout)
	ctx := context.Background()
	// A failure long ago, and a locked account whose lock outlives the
	// failure memory.
	if _, err := f.svc.Authenticate(ctx, "dev", "old", "x"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatal(err)
	}
	long := identity.Lockout{MaxFailures: 1, Duration: 48 * time.Hour, MaxDuration: 48 * time.Hour}
	locker := identity.New(f.store, newHasher(t, password.Options{}), long, f.clock.Now, zaptest.NewLogger(t))
	if _, err := locker.Authenticate(ctx, "dev", "locked", "x"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatal(err)
	}
	f.clock.Advance(identity.FailureMemory + time.Second)
	if _, err := f.svc.Authenticate(ctx, "dev", "recent", "x"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatal(err)
	}

	n, err := f.svc.ForgetStaleFailures(ctx)
	if err != nil || n != 1 {
		t.Fatalf("ForgetStaleFailures = %d, %v; want 1 (the old unlocked one)", n, err)
	}
	_, err = f.svc.Authenticate(ctx, "dev", "locked", "x")
	var lo *auth.LockedOutError
	if !errors.As(err, &lo) {
		t.Fatalf("a locked account was forgotten: %v", err)
	}
}

// An attempt the hasher was too busy to evaluate must not count towards a
// lockout, or load alone would lock people out.
func TestBusyHasherDoesNotCount(t *testing.T) {
	t.Parallel()
	store := postgres.NewStore(openPool(t, schemaURL(t, 4)))
	c := newClock()
	gate := &slotGate{}
	h := newHasher(t, password.Options{Concurrency: 1, MaxWait: time.Millisecond, Now: gate.now})
	svc := identity.New(store, h, lockout, c.Now, zaptest.NewLogger(t))
	ctx := context.Background()
	if _, err := svc.AddUser(ctx, "dev", "1111", "1111", false); err != nil {
		t.Fatal(err)
	}

	release := gate.hold(t, h)
	// Counted, the last of these would be refused as locked out.
	for i := range lockout.MaxFailures + 1 {
		if _, err := svc.Authenticate(ctx, "dev", "1111", "0000"); !errors.Is(err, auth.ErrBusy) {
			t.Fatalf("attempt %d with the hasher busy: %v, want ErrBusy", i+1, err)
		}
	}
	release()

	// None of the busy attempts counted: MaxFailures-1 failures, then the
	// right password still gets in.
	for i := range lockout.MaxFailures - 1 {
		if _, err := svc.Authenticate(ctx, "dev", "1111", "0000"); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("failure %d after the busy attempts: %v", i+1, err)
		}
	}
	if _, err := svc.Authenticate(ctx, "dev", "1111", "1111"); err != nil {
		t.Fatalf("right password: %v; busy attempts were counted", err)
	}
}

// failingStore is the real store with switches that make some calls fail as
// if the database had gone away.
type failingStore struct {
	*postgres.Store
	credentials atomic.Bool // UserCredentials fails
	release     atomic.Bool // ReleaseLoginAttempt fails
}

var errDown = fmt.Errorf("database went away: %w", auth.ErrUnavailable)

func (s *failingStore) UserCredentials(ctx context.Context, deviceID, username string) (auth.User, string, error) {
	if s.credentials.Load() {
		return auth.User{}, "", errDown
	}
	return s.Store.UserCredentials(ctx, deviceID, username)
}

func (s *failingStore) ReleaseLoginAttempt(ctx context.Context, deviceID, username string) error {
	if s.release.Load() {
		return errDown
	}
	return s.Store.ReleaseLoginAttempt(ctx, deviceID, username)
}

// An attempt that could not be evaluated because the store failed is not a
// failed guess either.
func TestUnevaluatedAttemptDoesNotCount(t *testing.T) {
	t.Parallel()
	store := &failingStore{Store: postgres.NewStore(openPool(t, schemaURL(t, 4)))}
	f := newFixtureOn(t, store, lockout)

	f.fail(t, lockout.MaxFailures-1)
	store.credentials.Store(true)
	for range 3 {
		if _, err := f.login("0000"); !errors.Is(err, auth.ErrUnavailable) {
			t.Fatalf("store down: %v, want ErrUnavailable", err)
		}
	}
	store.credentials.Store(false)
	if _, err := f.login("1111"); err != nil {
		t.Fatalf("right password after the outage: %v; unevaluated attempts were counted", err)
	}
}

// A run of failures can be left past MaxFailures without a lock (the
// attempt that should have locked was never evaluated, and taking it back
// failed too). That account must still get a lockout that ends, not be
// refused forever.
func TestLockoutWithoutLockStillEnds(t *testing.T) {
	t.Parallel()
	store := &failingStore{Store: postgres.NewStore(openPool(t, schemaURL(t, 4)))}
	f := newFixtureOn(t, store, lockout)

	f.fail(t, lockout.MaxFailures-1)
	store.credentials.Store(true)
	store.release.Store(true)
	if _, err := f.login("0000"); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("store down: %v, want ErrUnavailable", err)
	}
	store.credentials.Store(false)
	store.release.Store(false)

	_, err := f.login("1111")
	wantLocked(t, err, lockout.Duration)
	f.clock.Advance(lockout.Duration)
	if _, err := f.login("1111"); err != nil {
		t.Fatalf("right password after the lockout should have ended: %v", err)
	}
}

// A caller that gives up (context deadline) while waiting for the hasher
// was not evaluated either.
func TestDeadlineWhileWaitingDoesNotCount(t *testing.T) {
	t.Parallel()
	store := &expiringStore{Store: postgres.NewStore(openPool(t, schemaURL(t, 4)))}
	c := newClock()
	gate := &slotGate{}
	// MaxWait is long: the caller's deadline comes first.
	h := newHasher(t, password.Options{Concurrency: 1, MaxWait: time.Minute, Now: gate.now})
	svc := identity.New(store, h, lockout, c.Now, zaptest.NewLogger(t))
	ctx := context.Background()
	if _, err := svc.AddUser(ctx, "dev", "1111", "1111", false); err != nil {
		t.Fatal(err)
	}
	release := gate.hold(t, h)
	// Three attempts run out of time; counted, they and the failures below
	// would reach the lockout.
	for i := range 3 {
		dctx := newExpiringContext(ctx)
		_, err := svc.Authenticate(dctx, "dev", "1111", "0000")
		if !dctx.expired() {
			t.Fatalf("attempt %d: %v before it looked the account up", i+1, err)
		}
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, auth.ErrUnavailable) {
			t.Fatalf("attempt %d: %v, want the deadline while waiting for the hasher", i+1, err)
		}
	}
	release()
	f := &fixture{svc: svc, store: store.Store, clock: c}
	f.fail(t, lockout.MaxFailures-1)
	if _, err := f.login("1111"); err != nil {
		t.Fatalf("right password: %v; attempts cut short by a deadline were counted", err)
	}
}

// TestConfirmCatchesAPasswordChangeDuringLogin: a login checked against the
// old password must not keep the session it created when the password
// changed (or the user went) while it was hashing.
func TestConfirmCatchesAPasswordChangeDuringLogin(t *testing.T) {
	t.Parallel()
	f := newFixture(t, lockout)
	ctx := context.Background()
	u, err := f.login("1111")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Confirm(ctx, u); err != nil {
		t.Fatalf("Confirm with nothing changed: %v", err)
	}
	if _, err := f.svc.SetPassword(ctx, "dev", "1111", "4321"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Confirm(ctx, u); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("Confirm after a password change: %v, want ErrInvalidCredentials", err)
	}
	u2, err := f.login("4321")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.RemoveUser(ctx, "dev", "1111"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Confirm(ctx, u2); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("Confirm after the user was removed: %v, want ErrInvalidCredentials", err)
	}
}
