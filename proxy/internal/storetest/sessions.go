package storetest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

var sessionTests = []test{
	{"SessionRoundTrip", testSessionRoundTrip},
	{"SessionWithoutUser", testSessionWithoutUser},
	{"SessionUnknownIsNotFound", testSessionUnknownIsNotFound},
	{"CreateSessionDuplicateIsConflict", testCreateSessionDuplicateIsConflict},
	{"CreateSessionUnknownDeviceOrUserIsNotFound", testCreateSessionUnknownDeviceOrUserIsNotFound},
	{"RefreshSessionBumpsGeneration", testRefreshSessionBumpsGeneration},
	{"RefreshSessionOfEndedSessionIsInvalidToken", testRefreshSessionOfEndedSessionIsInvalidToken},
	{"RefreshSessionConcurrentOneWins", testRefreshSessionConcurrentOneWins},
	{"RevokeSession", testRevokeSession},
	{"RevokeSessionOfAnotherDeviceIsNotFound", testRevokeSessionOfAnotherDeviceIsNotFound},
	{"RevokeDevice", testRevokeDevice},
	{"ListSessions", testListSessions},
	{"DeleteExpired", testDeleteExpired},
	{"DeleteExpiredSession", testDeleteExpiredSession},
	{"CountLiveSessions", testCountLiveSessions},
}

func testSessionRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	u := addUser(t, s, "dev", "1111", true)

	want := auth.Session{
		ID: "0123456789abcdef0123456789abcdef", DeviceID: "dev", UserID: u.ID, Username: "1111", IsAdmin: true,
		Generation: 0,
		CreatedAt:  T0,                                             // microseconds: .123456
		ExpiresAt:  T0.Add(24*time.Hour + 654321*time.Microsecond), // other microseconds
		ClientAddr: "192.0.2.7:5555", UserAgent: "UnityPlayer/2022.3 (Quest 3)",
	}
	if err := s.CreateSession(ctx, want); err != nil {
		t.Fatal(err)
	}
	want.LastSeenAt = want.CreatedAt // until a use is recorded
	got, err := s.Session(ctx, want.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) || !got.LastSeenAt.Equal(want.LastSeenAt) {
		t.Fatalf("times: created %v expires %v last seen %v, want %v, %v and %v", got.CreatedAt, got.ExpiresAt, got.LastSeenAt,
			want.CreatedAt, want.ExpiresAt, want.LastSeenAt)
	}
	if !got.RefreshedAt.IsZero() || !got.RevokedAt.IsZero() || !got.PrevValidUntil.IsZero() {
		t.Fatalf("a new session has refreshed %v, revoked %v, prev valid until %v; want all zero",
			got.RefreshedAt, got.RevokedAt, got.PrevValidUntil)
	}
	// Compare the rest field by field with the times normalised.
	got.CreatedAt, got.ExpiresAt, got.LastSeenAt = want.CreatedAt, want.ExpiresAt, want.LastSeenAt
	if got != want {
		t.Fatalf("Session =\n%+v\nwant\n%+v", got, want)
	}
}

func testSessionWithoutUser(t *testing.T, s Store) {
	ctx := context.Background()
	addUser(t, s, "dev", "1111", false) // creates the device
	want := auth.Session{ID: "no-user", DeviceID: "dev", CreatedAt: T0, ExpiresAt: T0.Add(time.Hour)}
	if err := s.CreateSession(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Session(ctx, "no-user")
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != "" || got.Username != "" || got.DeviceID != "dev" {
		t.Fatalf("session without a user = %+v", got)
	}
}

func testSessionUnknownIsNotFound(t *testing.T, s Store) {
	if _, err := s.Session(context.Background(), "nope"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("unknown session: %v, want ErrNotFound", err)
	}
}

func testCreateSessionDuplicateIsConflict(t *testing.T, s Store) {
	u := addUser(t, s, "dev", "1111", false)
	sess := newSession(t, s, u, T0, time.Hour)
	if err := s.CreateSession(context.Background(), sess); !errors.Is(err, auth.ErrConflict) {
		t.Fatalf("duplicate session id: %v, want ErrConflict", err)
	}
}

// A session must belong to a device and user that exist; the store says
// not found, never unavailable, so that the caller does not retry.
func testCreateSessionUnknownDeviceOrUserIsNotFound(t *testing.T, s Store) {
	ctx := context.Background()
	addUser(t, s, "dev", "1111", false)
	for name, sess := range map[string]auth.Session{
		"unknown device": {ID: "s1", DeviceID: "nope", CreatedAt: T0, ExpiresAt: T0.Add(time.Hour)},
		"unknown user": {ID: "s2", DeviceID: "dev", UserID: "00000000-0000-4000-8000-000000000000",
			CreatedAt: T0, ExpiresAt: T0.Add(time.Hour)},
	} {
		if err := s.CreateSession(ctx, sess); !errors.Is(err, auth.ErrNotFound) || errors.Is(err, auth.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
		if _, err := s.Session(ctx, sess.ID); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("%s: the session was stored (%v)", name, err)
		}
	}
}

func testRefreshSessionBumpsGeneration(t *testing.T, s Store) {
	ctx := context.Background()
	u := addUser(t, s, "dev", "1111", false)
	sess := newSession(t, s, u, T0, time.Hour)

	now := T0.Add(30 * time.Minute)
	exp := now.Add(time.Hour)
	prev := now.Add(10 * time.Second)
	got, err := s.RefreshSession(ctx, sess.ID, 0, now, exp, prev)
	if err != nil {
		t.Fatal(err)
	}
	if got.Generation != 1 || !got.ExpiresAt.Equal(exp) || !got.PrevValidUntil.Equal(prev) || !got.RefreshedAt.Equal(now) {
		t.Fatalf("refreshed session: gen %d expires %v prev valid until %v refreshed %v; want 1, %v, %v, %v",
			got.Generation, got.ExpiresAt, got.PrevValidUntil, got.RefreshedAt, exp, prev, now)
	}
	if got.ID != sess.ID || got.Username != "1111" || got.UserID != u.ID || got.DeviceID != "dev" || !got.CreatedAt.Equal(T0) {
		t.Fatalf("refreshed session lost fields: %+v", got)
	}
	stored, err := s.Session(ctx, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Generation != 1 || !stored.ExpiresAt.Equal(exp) || !stored.PrevValidUntil.Equal(prev) || !stored.RefreshedAt.Equal(now) {
		t.Fatalf("stored after refresh: %+v", stored)
	}

	// The old generation cannot be refreshed again.
	if _, err := s.RefreshSession(ctx, sess.ID, 0, now, exp, prev); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("refresh of generation 0 again: %v, want ErrInvalidToken", err)
	}
	// The new one can.
	if got, err := s.RefreshSession(ctx, sess.ID, 1, now, exp, prev); err != nil || got.Generation != 2 {
		t.Fatalf("refresh of generation 1: gen %d, %v", got.Generation, err)
	}
}

func testRefreshSessionOfEndedSessionIsInvalidToken(t *testing.T, s Store) {
	ctx := context.Background()
	u := addUser(t, s, "dev", "1111", false)
	revoked := newSession(t, s, u, T0, time.Hour)
	if err := s.RevokeSession(ctx, revoked.ID, "", T0); err != nil {
		t.Fatal(err)
	}
	expired := newSession(t, s, u, T0, time.Hour)
	later := T0.Add(time.Hour) // exactly at expiry: expired

	for _, c := range []struct {
		name string
		id   string
		now  time.Time
	}{
		{"revoked", revoked.ID, T0},
		{"expired", expired.ID, later},
		{"unknown", "nope", T0},
	} {
		if _, err := s.RefreshSession(ctx, c.id, 0, c.now, c.now.Add(time.Hour), c.now); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("%s: %v, want ErrInvalidToken", c.name, err)
		}
	}
	// Nothing changed.
	if got, _ := s.Session(ctx, expired.ID); got.Generation != 0 || !got.ExpiresAt.Equal(later) {
		t.Errorf("expired session after a refused refresh: %+v", got)
	}
}

// One token must never fork into two chains: of concurrent refreshes of
// one generation exactly one wins.
func testRefreshSessionConcurrentOneWins(t *testing.T, s Store) {
	ctx := context.Background()
	u := addUser(t, s, "dev", "1111", false)
	sess := newSession(t, s, u, T0, time.Hour)

	const n = 10
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			now := T0.Add(time.Minute)
			_, errs[i] = s.RefreshSession(ctx, sess.ID, 0, now, now.Add(time.Hour), now.Add(10*time.Second))
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, auth.ErrInvalidToken):
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d refreshes won, want exactly 1", wins)
	}
	if got, _ := s.Session(ctx, sess.ID); got.Generation != 1 {
		t.Fatalf("generation %d after concurrent refreshes, want 1", got.Generation)
	}
}

func testRevokeSession(t *testing.T, s Store) {
	ctx := context.Background()
	u := addUser(t, s, "dev", "1111", false)
	a := newSession(t, s, u, T0, time.Hour)
	b := newSession(t, s, u, T0, time.Hour)
	expired := newSession(t, s, u, T0.Add(-2*time.Hour), time.Hour)
	now := T0.Add(time.Minute)

	if err := s.RevokeSession(ctx, a.ID, "dev", now); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Session(ctx, a.ID); !got.RevokedAt.Equal(now) {
		t.Fatalf("revoked at %v, want %v", got.RevokedAt, now)
	}
	// Without a device (operator's command) any session may be revoked.
	if err := s.RevokeSession(ctx, b.ID, "", now); err != nil {
		t.Fatal(err)
	}
	// Revoking again, an expired session, or an unknown id, is not found.
	if err := s.RevokeSession(ctx, a.ID, "", now); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("revoke twice: %v, want ErrNotFound", err)
	}
	if err := s.RevokeSession(ctx, expired.ID, "", now); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("revoke expired: %v, want ErrNotFound", err)
	}
	if err := s.RevokeSession(ctx, "nope", "", now); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("revoke unknown: %v, want ErrNotFound", err)
	}
	// The first revocation's time stands.
	if got, _ := s.Session(ctx, a.ID); !got.RevokedAt.Equal(now) {
		t.Fatalf("after revoking twice: revoked at %v, want %v", got.RevokedAt, now)
	}
}

// An admin acts on its own device only: another device's session looks
// like one that does not exist, and stays live.
func testRevokeSessionOfAnotherDeviceIsNotFound(t *testing.T, s Store) {
	ctx := context.Background()
	u := addUser(t, s, "dev-a", "1111", false)
	addUser(t, s, "dev-b", "1111", true)
	sess := newSession(t, s, u, T0, time.Hour)

	if err := s.RevokeSession(ctx, sess.ID, "dev-b", T0); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("revoke from another device: %v, want ErrNotFound", err)
	}
	if got, _ := s.Session(ctx, sess.ID); !got.RevokedAt.IsZero() {
		t.Fatal("the other device's session was revoked")
	}
}

func testRevokeDevice(t *testing.T, s Store) {
	ctx := context.Background()
	a := addUser(t, s, "dev", "aaaa", false)
	b := addUser(t, s, "dev", "bbbb", false)
	o := addUser(t, s, "other", "aaaa", false)
	a1 := newSession(t, s, a, T0, time.Hour)
	a2 := newSession(t, s, a, T0, time.Hour)
	b1 := newSession(t, s, b, T0, time.Hour)
	newSession(t, s, b, T0.Add(-2*time.Hour), time.Hour) // expired: not counted
	o1 := newSession(t, s, o, T0, time.Hour)

	if n, err := s.RevokeDevice(ctx, "dev", "nobody", T0); err != nil || n != 0 {
		t.Fatalf("RevokeDevice of an unknown user = %d, %v; want 0", n, err)
	}
	n, err := s.RevokeDevice(ctx, "dev", "aaaa", T0)
	if err != nil || n != 2 {
		t.Fatalf("RevokeDevice(dev, aaaa) = %d, %v; want 2", n, err)
	}
	for id, wantRevoked := range map[string]bool{a1.ID: true, a2.ID: true, b1.ID: false, o1.ID: false} {
		got, _ := s.Session(ctx, id)
		if got.RevokedAt.IsZero() == wantRevoked {
			t.Fatalf("after RevokeDevice(dev, aaaa): session %s revoked=%v, want %v", id, !got.RevokedAt.IsZero(), wantRevoked)
		}
	}
	if got, _ := s.Session(ctx, a1.ID); !got.RevokedAt.Equal(T0) {
		t.Fatalf("revoked at %v, want %v", got.RevokedAt, T0)
	}
	n, err = s.RevokeDevice(ctx, "dev", "", T0)
	if err != nil || n != 1 {
		t.Fatalf("RevokeDevice(dev) = %d, %v; want 1 (b's live session)", n, err)
	}
	if got, _ := s.Session(ctx, o1.ID); !got.RevokedAt.IsZero() {
		t.Fatal("RevokeDevice(dev) revoked a session of another device")
	}
	if n, err := s.RevokeDevice(ctx, "no-such-device", "", T0); err != nil || n != 0 {
		t.Fatalf("RevokeDevice of an unknown device = %d, %v; want 0", n, err)
	}
}

func testListSessions(t *testing.T, s Store) {
	ctx := context.Background()
	a := addUser(t, s, "dev", "aaaa", false)
	o := addUser(t, s, "other", "aaaa", false)
	live1 := newSession(t, s, a, T0, time.Hour)
	live2 := newSession(t, s, a, T0.Add(time.Second), time.Hour)
	revoked := newSession(t, s, a, T0, time.Hour)
	if err := s.RevokeSession(ctx, revoked.ID, "", T0); err != nil {
		t.Fatal(err)
	}
	newSession(t, s, a, T0.Add(-time.Hour), time.Hour) // expires exactly at T0
	otherLive := newSession(t, s, o, T0.Add(2*time.Second), time.Hour)

	all, err := s.ListSessions(ctx, "", T0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(all), []string{live1.ID, live2.ID, otherLive.ID}; !slices.Equal(got, want) {
		t.Fatalf("ListSessions(\"\") = %v, want %v (live only, oldest first)", got, want)
	}
	dev, err := s.ListSessions(ctx, "dev", T0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(dev), []string{live1.ID, live2.ID}; !slices.Equal(got, want) {
		t.Fatalf("ListSessions(dev) = %v, want %v", got, want)
	}
	if dev[0].Username != "aaaa" || dev[0].UserID != a.ID || dev[0].DeviceID != "dev" ||
		!dev[0].CreatedAt.Equal(T0) || !dev[0].ExpiresAt.Equal(T0.Add(time.Hour)) {
		t.Fatalf("listed session lacks its user or times: %+v", dev[0])
	}
	// Empty, not nil: it becomes a JSON [] rather than null.
	none, err := s.ListSessions(ctx, "no-such-device", T0)
	if err != nil || none == nil || len(none) != 0 {
		t.Fatalf("ListSessions of an unknown device = %#v, %v; want an empty list", none, err)
	}
}

func testDeleteExpired(t *testing.T, s Store) {
	ctx := context.Background()
	u := addUser(t, s, "dev", "1111", false)
	var expired []string
	for i := range 5 {
		expired = append(expired, newSession(t, s, u, T0.Add(-time.Hour-time.Duration(i)*time.Second), time.Hour).ID)
	}
	live := newSession(t, s, u, T0, time.Hour)
	revokedLive := newSession(t, s, u, T0, time.Hour)
	if err := s.RevokeSession(ctx, revokedLive.ID, "", T0); err != nil {
		t.Fatal(err)
	}

	n, err := s.DeleteExpired(ctx, T0, 3)
	if err != nil || n != 3 {
		t.Fatalf("DeleteExpired(limit 3) = %d, %v; want 3", n, err)
	}
	n, err = s.DeleteExpired(ctx, T0, 3)
	if err != nil || n != 2 {
		t.Fatalf("second DeleteExpired(limit 3) = %d, %v; want 2", n, err)
	}
	if n, err := s.DeleteExpired(ctx, T0, 3); err != nil || n != 0 {
		t.Fatalf("third DeleteExpired = %d, %v; want 0", n, err)
	}
	for _, id := range expired {
		if _, err := s.Session(ctx, id); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("expired session %s: %v, want deleted", id, err)
		}
	}
	for _, id := range []string{live.ID, revokedLive.ID} {
		if _, err := s.Session(ctx, id); err != nil {
			t.Fatalf("session %s not yet expired was deleted: %v", id, err)
		}
	}
}

func testDeleteExpiredSession(t *testing.T, s Store) {
	ctx := context.Background()
	u := addUser(t, s, "dev", "1111", false)
	sess := newSession(t, s, u, T0, time.Hour)

	// Not yet expired (a refresh may have extended it): kept.
	if deleted, err := s.DeleteExpiredSession(ctx, sess.ID, T0.Add(time.Hour-time.Microsecond)); err != nil || deleted {
		t.Fatalf("before expiry: deleted=%v, %v; want false", deleted, err)
	}
	if _, err := s.Session(ctx, sess.ID); err != nil {
		t.Fatalf("live session gone: %v", err)
	}
	if deleted, err := s.DeleteExpiredSession(ctx, sess.ID, T0.Add(time.Hour)); err != nil || !deleted {
		t.Fatalf("at expiry: deleted=%v, %v; want true", deleted, err)
	}
	if _, err := s.Session(ctx, sess.ID); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("expired session still there: %v", err)
	}
	if deleted, err := s.DeleteExpiredSession(ctx, sess.ID, T0.Add(time.Hour)); err != nil || deleted {
		t.Fatalf("again: deleted=%v, %v; want false", deleted, err)
	}
}

func testCountLiveSessions(t *testing.T, s Store) {
	ctx := context.Background()
	count := func(now time.Time) int64 {
		t.Helper()
		n, err := s.CountLiveSessions(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(T0); n != 0 {
		t.Fatalf("empty store: %d live sessions", n)
	}
	u := addUser(t, s, "dev", "1111", false)
	o := addUser(t, s, "other", "1111", false)
	newSession(t, s, u, T0, time.Hour)
	newSession(t, s, o, T0, 2*time.Hour)
	revoked := newSession(t, s, u, T0, time.Hour)
	if err := s.RevokeSession(ctx, revoked.ID, "", T0); err != nil {
		t.Fatal(err)
	}
	newSession(t, s, u, T0.Add(-time.Hour), time.Hour) // expires exactly at T0

	if n := count(T0); n != 2 {
		t.Fatalf("at T0: %d live sessions, want 2", n)
	}
	if n := count(T0.Add(time.Hour)); n != 1 {
		t.Fatalf("an hour later: %d live sessions, want 1", n)
	}
	if n := count(T0.Add(2 * time.Hour)); n != 0 {
		t.Fatalf("two hours later: %d live sessions, want 0", n)
	}
}
