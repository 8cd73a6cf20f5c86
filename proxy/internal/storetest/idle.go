package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/session"
)

var idleTests = []test{
	{"TouchSessionsNeverMovesBack", testTouchSessions},
	{"RevokeOtherUsers", testRevokeOtherUsers},
}

func testTouchSessions(t *testing.T, s Store) {
	ctx := context.Background()
	u := addUser(t, s, "dev", "1111", false)
	a := newSession(t, s, u, T0, time.Hour)
	b := newSession(t, s, u, T0, time.Hour)
	got, err := s.Session(ctx, a.ID)
	if err != nil || !got.LastSeenAt.Equal(T0) {
		t.Fatalf("a new session's last use: %v, %v; want its creation", got.LastSeenAt, err)
	}
	if err := s.TouchSessions(ctx, []session.Use{{ID: a.ID, At: T0.Add(10 * time.Minute)}, {ID: b.ID, At: T0.Add(5 * time.Minute)}, {ID: "gone", At: T0}}); err != nil {
		t.Fatal(err)
	}
	// A later replica's record of an earlier use does not move it back.
	if err := s.TouchSessions(ctx, []session.Use{{ID: a.ID, At: T0.Add(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]time.Time{a.ID: T0.Add(10 * time.Minute), b.ID: T0.Add(5 * time.Minute)} {
		if got, err := s.Session(ctx, id); err != nil || !got.LastSeenAt.Equal(want) {
			t.Errorf("%s: last use %v, %v; want %v", id, got.LastSeenAt, err, want)
		}
	}
}

func testRevokeOtherUsers(t *testing.T, s Store) {
	ctx := context.Background()
	ann := addUser(t, s, "dev", "ann", false)
	bob := addUser(t, s, "dev", "bob", false)
	cat := addUser(t, s, "other", "cat", false)
	annS, bobS, catS := newSession(t, s, ann, T0, time.Hour), newSession(t, s, bob, T0, time.Hour), newSession(t, s, cat, T0, time.Hour)
	n, err := s.RevokeOtherUsers(ctx, "dev", bob.ID, T0)
	if err != nil || n != 1 {
		t.Fatalf("revoked %d, %v; want ann's one session", n, err)
	}
	for id, revoked := range map[string]bool{annS.ID: true, bobS.ID: false, catS.ID: false} {
		got, err := s.Session(ctx, id)
		if err != nil || got.RevokedAt.IsZero() == revoked {
			t.Errorf("%s: revoked at %v, %v; want revoked %v", id, got.RevokedAt, err, revoked)
		}
	}
}
