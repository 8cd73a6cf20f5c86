package login_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/authsidecar/authsidecar/internal/testkit"
	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/identity"
	"github.com/authsidecar/authsidecar/proxy/internal/login"
	"github.com/authsidecar/authsidecar/proxy/internal/password"
	"github.com/authsidecar/authsidecar/proxy/internal/password/legacytest"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
	"github.com/authsidecar/authsidecar/proxy/internal/token"
)

type fixture struct {
	svc   *login.Service
	store *postgres.Store
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	ctx := context.Background()
	pool := testkit.Pool(t)
	m, err := postgres.NewMigrator(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	store := postgres.NewStore(pool)
	key, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.New([]token.Key{key}, token.Options{Issuer: "test"})
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := password.New(password.Options{Params: password.Params{Memory: 64, Time: 1, Threads: 1}, Share: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hasher.Close)
	log := zaptest.NewLogger(t)
	ids := identity.New(store, hasher, identity.Lockout{MaxFailures: 3, Duration: time.Minute}, time.Now, log)
	sessions := session.NewManager(store, signer, session.Config{TTL: time.Hour, MaxAge: 2 * time.Hour}, time.Now, log)
	return fixture{svc: login.New(ids, sessions, nil, log), store: store}
}

// djangoHash is a hash of 1234 made by Django's make_password (see
// scripts/legacy-hashes.py), and the PIN.
func djangoHash(t *testing.T, format string) (hash, pin string) {
	return legacytest.Of(t, format, "1234"), "1234"
}

// TestLegacyHashIsUpgradedByTheLogin: an imported user logs in with the
// old PIN; the login's transaction replaces the hash with argon2id, which
// then verifies the same PIN.
func TestLegacyHashIsUpgradedByTheLogin(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"django-pbkdf2_sha256", "django-bcrypt_sha256", "django-argon2"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			ctx := context.Background()
			legacy, pin := djangoHash(t, format)
			if _, err := f.store.AddUser(ctx, "HS-1", "ann", legacy, false); err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.Login(ctx, login.Request{DeviceID: "HS-1", Username: "ann", Password: "9999"}); !errors.Is(err, auth.ErrInvalidCredentials) {
				t.Fatalf("wrong PIN: %v", err)
			}
			if _, hash, _ := f.store.UserCredentials(ctx, "HS-1", "ann"); hash != legacy {
				t.Fatal("a wrong PIN changed the hash")
			}
			issued, err := f.svc.Login(ctx, login.Request{DeviceID: "HS-1", Username: "ann", Password: pin})
			if err != nil {
				t.Fatalf("the old PIN: %v", err)
			}
			if issued.Token == "" {
				t.Fatal("no token")
			}
			_, hash, err := f.store.UserCredentials(ctx, "HS-1", "ann")
			if err != nil || !strings.HasPrefix(hash, "$argon2id$") {
				t.Fatalf("stored hash after the login: %.20q…, %v", hash, err)
			}
			// And the upgraded hash is the PIN's.
			if _, err := f.svc.Login(ctx, login.Request{DeviceID: "HS-1", Username: "ann", Password: pin}); err != nil {
				t.Fatalf("the PIN after the upgrade: %v", err)
			}
		})
	}
}

// TestUpgradeRollsBackWithTheSession: when the session cannot be created,
// the hash stays as it was: they commit together or not at all.
func TestUpgradeRollsBackWithTheSession(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	legacy, _ := djangoHash(t, "django-pbkdf2_sha256")
	u, err := f.store.AddUser(ctx, "HS-1", "ann", legacy, false)
	if err != nil {
		t.Fatal(err)
	}
	dup := auth.Session{ID: "s1", DeviceID: "HS-1", UserID: u.ID, CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	if err := f.store.CreateSession(ctx, dup); err != nil {
		t.Fatal(err)
	}
	if err := f.store.CreateSessionUpgradingHash(ctx, dup, legacy, "$argon2id$new"); !errors.Is(err, auth.ErrConflict) {
		t.Fatalf("a duplicate session: %v", err)
	}
	if _, hash, _ := f.store.UserCredentials(ctx, "HS-1", "ann"); hash != legacy {
		t.Fatal("the hash changed though the session was not created")
	}
}

// TestOneUserPerDevice: with the rule on, a sign-in on a device ends the
// other users' sessions there (the previous patient's), and no one else's.
func TestOneUserPerDevice(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.svc.OneUserPerDevice = true
	ctx := context.Background()
	hash, pin := djangoHash(t, "django-pbkdf2_sha256")
	for _, u := range [][2]string{{"HS-1", "ann"}, {"HS-1", "bob"}, {"HS-2", "cat"}} {
		if _, err := f.store.AddUser(ctx, u[0], u[1], hash, false); err != nil {
			t.Fatal(err)
		}
	}
	in := func(device, user string) session.Issued {
		t.Helper()
		iss, err := f.svc.Login(ctx, login.Request{DeviceID: device, Username: user, Password: pin})
		if err != nil {
			t.Fatal(err)
		}
		return iss
	}
	ann1, ann2, cat := in("HS-1", "ann"), in("HS-1", "ann"), in("HS-2", "cat")
	bob := in("HS-1", "bob")
	for _, c := range []struct {
		name string
		iss  session.Issued
		live bool
	}{{"ann's first", ann1, false}, {"ann's second", ann2, false}, {"bob's", bob, true}, {"cat's on another device", cat, true}} {
		s, err := f.store.Session(ctx, c.iss.Session.ID)
		if err != nil {
			t.Fatal(err)
		}
		if live := s.RevokedAt.IsZero(); live != c.live {
			t.Errorf("%s session live %v, want %v", c.name, live, c.live)
		}
	}
}
