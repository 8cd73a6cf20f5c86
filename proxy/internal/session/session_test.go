package session_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zaptest"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
	"github.com/authsidecar/authsidecar/proxy/internal/token"
)

func TestCreateThenAuthenticate(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	iss := f.login(t, f.alice)

	if len(iss.Session.ID) != 32 {
		t.Fatalf("session id %q: want 128 bits in hex", iss.Session.ID)
	}
	if !iss.Session.ExpiresAt.Equal(t0.Add(defaults.TTL)) {
		t.Fatalf("expires at %v, want %v", iss.Session.ExpiresAt, t0.Add(defaults.TTL))
	}
	c := f.wantOK(t, iss.Token)
	s := c.Session
	if s.ID != iss.Session.ID || s.DeviceID != "dev" || s.UserID != f.alice.ID || s.Username != "alice" || !s.IsAdmin {
		t.Fatalf("caller's session = %+v", s)
	}
	if c.TokenGeneration != 0 || s.Generation != 0 {
		t.Fatalf("generations: token %d, session %d; want 0", c.TokenGeneration, s.Generation)
	}
	if !s.CreatedAt.Equal(t0) || !s.ExpiresAt.Equal(t0.Add(defaults.TTL)) {
		t.Fatalf("times: created %v, expires %v", s.CreatedAt, s.ExpiresAt)
	}
	if s.ClientAddr != "192.0.2.1:4000" || s.UserAgent != "test" {
		t.Fatalf("client: %q, %q", s.ClientAddr, s.UserAgent)
	}
	// The token says the same as the row.
	claims, err := f.signer.Verify(iss.Token)
	if err != nil {
		t.Fatal(err)
	}
	if claims.SessionID != s.ID || claims.Subject != f.alice.ID || claims.DeviceID != "dev" || !claims.ExpiresAt.Equal(s.ExpiresAt) {
		t.Fatalf("claims %+v do not match the session %+v", claims, s)
	}
	// Each login is its own session.
	if other := f.login(t, f.alice); other.Session.ID == iss.Session.ID {
		t.Fatal("two logins share a session id")
	}
}

// A client's User-Agent is stored for operators; whatever it holds must not
// fail the login.
func TestCreateWithHostileUserAgent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	ua := "bad\xff\xfe\x00" + strings.Repeat("é", 400)
	iss, err := f.m.Create(context.Background(), f.bob, session.Client{Addr: "192.0.2.1:1", UserAgent: ua})
	if err != nil {
		t.Fatalf("login with a hostile User-Agent: %v", err)
	}
	s := f.wantOK(t, iss.Token).Session
	if len(s.UserAgent) > 256 || !utf8.ValidString(s.UserAgent) || !strings.HasPrefix(s.UserAgent, "badé") {
		t.Fatalf("stored User-Agent %q (%d bytes)", s.UserAgent, len(s.UserAgent))
	}
}

func TestAuthenticateGarbageToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	iss := f.login(t, f.bob)

	// A token for the same session signed with another key.
	key, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := token.New([]token.Key{key}, token.Options{Issuer: "test", Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := foreign.Sign(token.Claims{SessionID: iss.Session.ID, DeviceID: "dev", ExpiresAt: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string]string{
		"empty":         "",
		"garbage":       "garbage",
		"three dots":    "a.b.c",
		"truncated":     iss.Token[:len(iss.Token)-3],
		"other key":     forged,
		"with newline":  iss.Token[:10] + "\n" + iss.Token[10:],
		"overlong":      strings.Repeat("a", token.MaxTokenBytes+1),
		"bit flipped":   flip(iss.Token),
		"bearer prefix": "Bearer " + iss.Token,
	} {
		f.wantRefused(t, raw, name)
	}
	// The real one still works.
	f.wantOK(t, iss.Token)
}

// flip changes one character of the signature.
func flip(raw string) string {
	b := []byte(raw)
	i := len(b) - 5
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestAuthenticateDeletedSession(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	iss := f.login(t, f.bob)
	if _, err := f.pool.Exec(context.Background(), `DELETE FROM sessions WHERE id = $1`, iss.Session.ID); err != nil {
		t.Fatal(err)
	}
	f.wantRefused(t, iss.Token, "session row gone")
}

func TestAuthenticateRevokedSession(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	iss := f.login(t, f.bob)
	if err := f.m.Revoke(context.Background(), iss.Session.ID, "", "operator", "test"); err != nil {
		t.Fatal(err)
	}
	f.wantRefused(t, iss.Token, "revoked")
}

// An expired session is refused at once and its row deleted when met.
func TestAuthenticateExpiredDeletesRow(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	iss := f.login(t, f.bob)

	f.clock.Advance(defaults.TTL - time.Second)
	f.wantOK(t, iss.Token)
	f.clock.Advance(time.Second) // exactly at expiry
	f.wantRefused(t, iss.Token, "expired")
	if n := f.rows(t, iss.Session.ID); n != 0 {
		t.Fatalf("expired session met: %d rows left, want it deleted", n)
	}
	f.wantRefused(t, iss.Token, "expired, second time")
}

// A token past its exp whose session a refresh extended must not delete the
// live session.
func TestExpiredOldTokenKeepsRefreshedSession(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	iss := f.login(t, f.bob)
	f.clock.Advance(30 * time.Minute)
	fresh, err := f.m.Refresh(context.Background(), f.wantOK(t, iss.Token))
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(30 * time.Minute) // the old token's exp
	f.wantRefused(t, iss.Token, "old token past its exp")
	if n := f.rows(t, iss.Session.ID); n != 1 {
		t.Fatalf("the refreshed session's row: %d rows, want 1", n)
	}
	f.wantOK(t, fresh.Token)
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	ctx := context.Background()
	old := f.login(t, f.bob)
	f.clock.Advance(10 * time.Minute)
	refreshedAt := f.clock.Now()

	fresh, err := f.m.Refresh(ctx, f.wantOK(t, old.Token))
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Session.ID != old.Session.ID || fresh.Token == old.Token {
		t.Fatalf("refresh: session %s token changed=%v", fresh.Session.ID, fresh.Token != old.Token)
	}
	if want := refreshedAt.Add(defaults.TTL); !fresh.Session.ExpiresAt.Equal(want) {
		t.Fatalf("refreshed session expires %v, want TTL from the refresh: %v", fresh.Session.ExpiresAt, want)
	}
	c := f.wantOK(t, fresh.Token)
	if c.TokenGeneration != 1 || c.Session.Generation != 1 {
		t.Fatalf("after refresh: token generation %d, session generation %d; want 1, 1", c.TokenGeneration, c.Session.Generation)
	}

	// The old token keeps working for the grace period, then stops.
	f.clock.Advance(defaults.RefreshGrace - time.Millisecond)
	f.wantOK(t, old.Token)
	f.clock.Advance(time.Millisecond)
	f.wantRefused(t, old.Token, "old token after the grace")
	f.wantOK(t, fresh.Token)

	// The new token lives TTL from the refresh, past the old expiry.
	f.clock.Set(refreshedAt.Add(defaults.TTL - time.Second))
	f.wantOK(t, fresh.Token)
}

func TestRefreshWithoutGrace(t *testing.T) {
	t.Parallel()
	cfg := defaults
	cfg.RefreshGrace = 0
	f := newFixture(t, cfg)
	old := f.login(t, f.bob)
	fresh, err := f.m.Refresh(context.Background(), f.wantOK(t, old.Token))
	if err != nil {
		t.Fatal(err)
	}
	f.wantRefused(t, old.Token, "old token with no grace")
	f.wantOK(t, fresh.Token)
}

// A token already replaced may still pass inside its grace, but it must
// not start a second chain.
func TestRefreshOfSupersededToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	ctx := context.Background()
	old := f.login(t, f.bob)
	if _, err := f.m.Refresh(ctx, f.wantOK(t, old.Token)); err != nil {
		t.Fatal(err)
	}
	c := f.wantOK(t, old.Token) // inside the grace
	if _, err := f.m.Refresh(ctx, c); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("refresh of a superseded token: %v, want ErrInvalidToken", err)
	}
	// A stale Caller (read before the refresh) loses in the store too.
	stale := session.Caller{Session: c.Session, TokenGeneration: 0}
	stale.Session.Generation = 0
	if _, err := f.m.Refresh(ctx, stale); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("refresh with a stale caller: %v, want ErrInvalidToken", err)
	}
}

func TestConcurrentRefreshOneWins(t *testing.T) {
	t.Parallel()
	f := newFixtureConns(t, defaults, 12)
	ctx := context.Background()
	iss := f.login(t, f.bob)
	c := f.wantOK(t, iss.Token)

	const n = 10
	results := make([]session.Issued, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = f.m.Refresh(ctx, c)
		})
	}
	close(start)
	wg.Wait()
	var winner string
	for i, err := range errs {
		switch {
		case err == nil:
			if winner != "" {
				t.Fatal("two refreshes of one token won: two live chains")
			}
			winner = results[i].Token
		case errors.Is(err, auth.ErrInvalidToken):
		default:
			t.Fatalf("refresh %d: %v", i, err)
		}
	}
	if winner == "" {
		t.Fatal("no refresh won")
	}
	f.wantOK(t, winner)
}

// SESSION_MAX_AGE: no refresh extends a session past this age from login.
func TestRefreshCappedByMaxAge(t *testing.T) {
	t.Parallel()
	cfg := session.Config{TTL: 24 * time.Hour, MaxAge: 36 * time.Hour, RefreshGrace: 10 * time.Second}
	f := newFixture(t, cfg)
	ctx := context.Background()
	iss := f.login(t, f.bob)

	f.clock.Advance(20 * time.Hour)
	fresh, err := f.m.Refresh(ctx, f.wantOK(t, iss.Token))
	if err != nil {
		t.Fatal(err)
	}
	limit := t0.Add(cfg.MaxAge)
	if !fresh.Session.ExpiresAt.Equal(limit) {
		t.Fatalf("refreshed at 20h: expires %v, want the max age %v", fresh.Session.ExpiresAt, limit)
	}
	claims, err := f.signer.Verify(fresh.Token)
	if err != nil || !claims.ExpiresAt.Equal(limit) {
		t.Fatalf("token exp %v, %v; want %v", claims.ExpiresAt, err, limit)
	}
	f.clock.Set(limit.Add(-time.Second))
	again, err := f.m.Refresh(ctx, f.wantOK(t, fresh.Token))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Session.ExpiresAt.Equal(limit) {
		t.Fatalf("refreshed a second before the max age: expires %v, want %v", again.Session.ExpiresAt, limit)
	}
	f.clock.Set(limit)
	f.wantRefused(t, again.Token, "at the max age")
}

func TestLogout(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	ctx := context.Background()
	iss := f.login(t, f.bob)
	other := f.login(t, f.bob)
	c := f.wantOK(t, iss.Token)
	if err := f.m.Logout(ctx, c); err != nil {
		t.Fatal(err)
	}
	f.wantRefused(t, iss.Token, "after logout")
	f.wantOK(t, other.Token) // another session of the same user
	// Logging out twice is not an error.
	if err := f.m.Logout(ctx, c); err != nil {
		t.Fatalf("second logout: %v", err)
	}
}

// An admin acts on its own device only.
func TestRevokeOtherDeviceIsNotFound(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	ctx := context.Background()
	carol := f.login(t, f.carol)
	if err := f.m.Revoke(ctx, carol.Session.ID, "dev", "alice", "admin"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("revoke another device's session: %v, want ErrNotFound", err)
	}
	f.wantOK(t, carol.Token)
	if err := f.m.Revoke(ctx, carol.Session.ID, "other", "admin", "admin"); err != nil {
		t.Fatalf("revoke on its own device: %v", err)
	}
	f.wantRefused(t, carol.Token, "revoked by its device's admin")
	if err := f.m.Revoke(ctx, "0123456789abcdef0123456789abcdef", "dev", "alice", "admin"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("revoke unknown session: %v, want ErrNotFound", err)
	}
}

func TestRevokeDeviceByUsername(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	ctx := context.Background()
	a1, a2 := f.login(t, f.alice), f.login(t, f.alice)
	b := f.login(t, f.bob)
	c := f.login(t, f.carol)

	n, err := f.m.RevokeDevice(ctx, "dev", "alice", "alice", "admin")
	if err != nil || n != 2 {
		t.Fatalf("RevokeDevice(dev, alice) = %d, %v; want 2", n, err)
	}
	f.wantRefused(t, a1.Token, "alice's first session")
	f.wantRefused(t, a2.Token, "alice's second session")
	f.wantOK(t, b.Token)
	f.wantOK(t, c.Token)

	n, err = f.m.RevokeDevice(ctx, "dev", "", "alice", "admin")
	if err != nil || n != 1 {
		t.Fatalf("RevokeDevice(dev) = %d, %v; want 1", n, err)
	}
	f.wantRefused(t, b.Token, "bob's session after the device was revoked")
	f.wantOK(t, c.Token)
}

func TestList(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	ctx := context.Background()
	short := f.login(t, f.alice) // expires first
	f.clock.Advance(30 * time.Minute)
	b := f.login(t, f.bob)
	revoked := f.login(t, f.bob)
	f.clock.Advance(time.Second) // oldest first: give each its own time
	c := f.login(t, f.carol)
	if err := f.m.Revoke(ctx, revoked.Session.ID, "", "operator", "test"); err != nil {
		t.Fatal(err)
	}

	ids := func(device string) []string {
		list, err := f.m.List(ctx, device)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range list {
			out = append(out, s.ID)
		}
		return out
	}
	if got, want := ids("dev"), []string{short.Session.ID, b.Session.ID}; !slices.Equal(got, want) {
		t.Fatalf("List(dev) = %v, want %v", got, want)
	}
	if got, want := ids(""), []string{short.Session.ID, b.Session.ID, c.Session.ID}; !slices.Equal(got, want) {
		t.Fatalf("List() = %v, want %v", got, want)
	}
	f.clock.Advance(30*time.Minute - time.Second) // the first session's expiry
	if got, want := ids("dev"), []string{b.Session.ID}; !slices.Equal(got, want) {
		t.Fatalf("List(dev) after an expiry = %v, want %v", got, want)
	}
}

// Cleanup deletes every expired session, in batches, and nothing else.
func TestCleanupInBatches(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	ctx := context.Background()
	const expired = 12000 // more than two batches
	if _, err := f.pool.Exec(ctx, `
		INSERT INTO sessions (id, device_id, created_at, expires_at)
		SELECT 'old-' || g, 'dev', $1::timestamptz - interval '2 hours', $1::timestamptz - interval '1 hour' + g * interval '1 microsecond'
		FROM generate_series(1, $2::int) g`, t0, expired); err != nil {
		t.Fatal(err)
	}
	live := []session.Issued{f.login(t, f.alice), f.login(t, f.bob), f.login(t, f.carol)}

	n, err := f.m.Cleanup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != expired {
		t.Fatalf("Cleanup = %d, want %d", n, expired)
	}
	var left int
	if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM sessions`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != len(live) {
		t.Fatalf("%d rows left, want the %d live sessions", left, len(live))
	}
	for _, iss := range live {
		f.wantOK(t, iss.Token)
	}
	if n, err := f.m.Cleanup(ctx); err != nil || n != 0 {
		t.Fatalf("second Cleanup = %d, %v; want 0", n, err)
	}
}

// When the store cannot answer nothing is known about the session: the
// error must say unavailable (503), never invalid token (401).
func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	ctx := context.Background()
	iss := f.login(t, f.bob)
	c := f.wantOK(t, iss.Token)
	f.pool.Close()

	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, auth.ErrUnavailable) {
			t.Errorf("%s with the store down: %v, want ErrUnavailable", op, err)
		}
		if errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("%s with the store down: %v wraps ErrInvalidToken", op, err)
		}
	}
	_, err := f.m.Authenticate(ctx, iss.Token)
	check("Authenticate", err)
	_, err = f.m.Refresh(ctx, c)
	check("Refresh", err)
	_, err = f.m.Create(ctx, f.bob, session.Client{})
	check("Create", err)
	check("Logout", f.m.Logout(ctx, c))
	check("Revoke", f.m.Revoke(ctx, iss.Session.ID, "dev", "alice", "admin"))
	_, err = f.m.RevokeDevice(ctx, "dev", "", "alice", "admin")
	check("RevokeDevice", err)
	_, err = f.m.List(ctx, "dev")
	check("List", err)
	_, err = f.m.Cleanup(ctx)
	check("Cleanup", err)
}

// The same through an address where no database listens.
func TestStoreUnreachable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	iss := f.login(t, f.bob)
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	m := session.NewManager(postgres.NewStore(pool), f.signer, defaults, f.clock.Now, zaptest.NewLogger(t))
	_, err = m.Authenticate(context.Background(), iss.Token)
	if !errors.Is(err, auth.ErrUnavailable) || errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("Authenticate with the database unreachable: %v, want ErrUnavailable only", err)
	}
}

// TestRefreshTokenReuseRevokesTheSession: a token that a refresh replaced,
// presented for a refresh after its grace, ends the whole session — the
// chain the first refresh started included — on every replica.
func TestRefreshTokenReuseRevokesTheSession(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	ctx := context.Background()
	stolen := f.login(t, f.bob)
	thief, err := f.m.RefreshToken(ctx, stolen.Token) // the thief refreshes first
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(defaults.RefreshGrace + time.Second)
	if _, err := f.m.RefreshToken(ctx, stolen.Token); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("reused refresh token: %v, want ErrInvalidToken", err)
	}
	f.wantRefused(t, thief.Token, "the thief's chain after the reuse")
	s, err := f.store.Session(ctx, stolen.Session.ID)
	if err != nil || s.RevokedAt.IsZero() {
		t.Fatalf("session after the reuse: revoked at %v, %v", s.RevokedAt, err)
	}
}

// TestRefreshInsideTheGraceIsNoReuse: two refreshes of one token inside its
// grace are a client's parallel requests, not a theft: one wins, the other
// is refused, and the session lives on.
func TestRefreshInsideTheGraceIsNoReuse(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaults)
	ctx := context.Background()
	first := f.login(t, f.bob)
	next, err := f.m.RefreshToken(ctx, first.Token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.RefreshToken(ctx, first.Token); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("second refresh inside the grace: %v, want refused", err)
	}
	f.wantOK(t, next.Token)
	// Used on an ordinary request after its grace, the old token is
	// refused without ending the session.
	f.clock.Advance(defaults.RefreshGrace + time.Second)
	f.wantRefused(t, first.Token, "superseded after its grace")
	f.wantOK(t, next.Token)
}
