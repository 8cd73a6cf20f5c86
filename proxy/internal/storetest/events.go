package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

var eventTests = []test{
	{"EventsAreWrittenWithTheirChange", testEventsWithTheirChange},
	{"EventsAreNotWrittenWithoutTheirChange", testEventsWithoutTheirChange},
	{"ListEventsFilters", testListEventsFilters},
	{"DeleteEventsBefore", testDeleteEventsBefore},
}

// rec is a context for one change recorded as t.
func rec(t auth.EventType) context.Context {
	return auth.Recording(context.Background(), auth.Event{Time: T0, Type: t, By: "tester", ClientAddr: "192.0.2.7", Reason: "test"})
}

func eventsOf(t *testing.T, s Store, typ auth.EventType) []auth.Event {
	t.Helper()
	evs, err := s.ListEvents(context.Background(), auth.EventFilter{Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func wantEvents(t *testing.T, s Store, typ auth.EventType, n int) []auth.Event {
	t.Helper()
	evs := eventsOf(t, s, typ)
	if len(evs) != n {
		t.Fatalf("%d %s events, want %d: %+v", len(evs), typ, n, evs)
	}
	return evs
}

// Every store call that makes a change writes the event its context
// carries, with the fields as given.
func testEventsWithTheirChange(t *testing.T, s Store) {
	ctx := context.Background()
	u, err := s.AddUser(rec(auth.EventUserAdded), "dev", "1111", "hash", false)
	if err != nil {
		t.Fatal(err)
	}
	ev := wantEvents(t, s, auth.EventUserAdded, 1)[0]
	if !ev.Time.Equal(T0) || ev.By != "tester" || ev.ClientAddr != "192.0.2.7" || ev.Reason != "test" || ev.ID == 0 {
		t.Fatalf("event as stored: %+v", ev)
	}
	if _, _, err := s.SetPassword(rec(auth.EventPasswordChanged), "dev", "1111", "hash2", T0); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, s, auth.EventPasswordChanged, 1)
	sess := auth.Session{ID: "s1", DeviceID: "dev", UserID: u.ID, CreatedAt: T0, ExpiresAt: T0.Add(time.Hour)}
	if err := s.CreateSession(rec(auth.EventLogin), sess); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, s, auth.EventLogin, 1)
	if _, err := s.RefreshSession(rec(auth.EventRefresh), "s1", 0, T0, T0.Add(time.Hour), T0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, s, auth.EventRefresh, 1)
	if err := s.RevokeSession(rec(auth.EventLogout), "s1", "", T0); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, s, auth.EventLogout, 1)
	newSession(t, s, u, T0, time.Hour)
	if _, err := s.RevokeDevice(rec(auth.EventRevoke), "dev", "", T0); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, s, auth.EventRevoke, 1)
	if _, _, err := s.ReserveLoginAttempt(ctx, "dev", "1111", T0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LockAccount(rec(auth.EventLockout), "dev", "1111", T0, time.Minute, time.Hour); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, s, auth.EventLockout, 1)
	if _, err := s.ResetLoginFailures(rec(auth.EventUnlock), "dev", "1111"); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, s, auth.EventUnlock, 1)
	if err := s.RecordEvent(ctx, auth.Event{Time: T0, Type: auth.EventLoginFailed, DeviceID: "dev", Username: "1111"}); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, s, auth.EventLoginFailed, 1)
	if _, err := s.ImportUsers(rec(auth.EventUserImported), []auth.ImportedUser{
		{DeviceID: "dev", Username: "a", PasswordHash: "h"}, {DeviceID: "dev", Username: "b", PasswordHash: "h"},
		{DeviceID: "dev", Username: "1111", PasswordHash: "h"}, // skipped: no event
	}, false, true, T0); err != nil {
		t.Fatal(err)
	}
	if evs := wantEvents(t, s, auth.EventUserImported, 2); evs[0].Username == evs[1].Username {
		t.Fatalf("import events do not name their users: %+v", evs)
	}
	if _, _, err := s.RemoveUser(rec(auth.EventUserRemoved), "dev", "1111"); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, s, auth.EventUserRemoved, 1)
	// The trail outlives the user it names.
	if evs := eventsOf(t, s, ""); len(evs) != 12 {
		t.Fatalf("%d events in all, want 12", len(evs))
	}
}

// A change that fails, or does nothing, leaves no event: the event exists
// exactly when its change committed. Calls without an event write none.
func testEventsWithoutTheirChange(t *testing.T, s Store) {
	ctx := context.Background()
	u := addUser(t, s, "dev", "1111", false) // no event in its context
	if _, err := s.AddUser(rec(auth.EventUserAdded), "dev", "1111", "hash", false); !errors.Is(err, auth.ErrConflict) {
		t.Fatalf("duplicate user: %v", err)
	}
	if _, _, err := s.SetPassword(rec(auth.EventPasswordChanged), "dev", "nobody", "h", T0); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("password of nobody: %v", err)
	}
	if _, _, err := s.RemoveUser(rec(auth.EventUserRemoved), "dev", "nobody"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("remove nobody: %v", err)
	}
	sess := newSession(t, s, u, T0, time.Hour)
	if err := s.CreateSession(rec(auth.EventLogin), sess); !errors.Is(err, auth.ErrConflict) {
		t.Fatalf("duplicate session: %v", err)
	}
	if _, err := s.RefreshSession(rec(auth.EventRefresh), sess.ID, 7, T0, T0.Add(time.Hour), T0); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("refresh of a wrong generation: %v", err)
	}
	if err := s.RevokeSession(rec(auth.EventLogout), "no-such-session", "", T0); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("revoke of nothing: %v", err)
	}
	// An account already locked keeps its lock, and this call locked
	// nothing.
	if _, _, err := s.ReserveLoginAttempt(ctx, "dev", "1111", T0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LockAccount(ctx, "dev", "1111", T0, time.Minute, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LockAccount(rec(auth.EventLockout), "dev", "1111", T0, time.Minute, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ImportUsers(rec(auth.EventUserImported), []auth.ImportedUser{{DeviceID: "dev", Username: "new", PasswordHash: "h"}}, false, false, T0); err != nil {
		t.Fatal(err)
	}
	if evs := eventsOf(t, s, ""); len(evs) != 0 {
		t.Fatalf("events without their change: %+v", evs)
	}
}

func testListEventsFilters(t *testing.T, s Store) {
	ctx := context.Background()
	for i, ev := range []auth.Event{
		{Type: auth.EventLogin, DeviceID: "A", Username: "u1"},
		{Type: auth.EventLogout, DeviceID: "A", Username: "u1"},
		{Type: auth.EventLogin, DeviceID: "B", Username: "u1"},
		{Type: auth.EventLogin, DeviceID: "A", Username: "u2"},
	} {
		ev.Time = T0.Add(time.Duration(i) * time.Minute)
		if err := s.RecordEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		f    auth.EventFilter
		want int
	}{
		{auth.EventFilter{}, 4},
		{auth.EventFilter{DeviceID: "A"}, 3},
		{auth.EventFilter{DeviceID: "A", Username: "u1"}, 2},
		{auth.EventFilter{Type: auth.EventLogin}, 3},
		{auth.EventFilter{Since: T0.Add(2 * time.Minute)}, 2},
		{auth.EventFilter{Limit: 1}, 1},
	} {
		evs, err := s.ListEvents(ctx, c.f)
		if err != nil || len(evs) != c.want {
			t.Errorf("%+v: %d events, %v; want %d", c.f, len(evs), err, c.want)
		}
		for i := 1; i < len(evs); i++ {
			if evs[i].Time.Before(evs[i-1].Time) {
				t.Errorf("%+v: not oldest first", c.f)
			}
		}
	}
}

func testDeleteEventsBefore(t *testing.T, s Store) {
	ctx := context.Background()
	for i := range 5 {
		if err := s.RecordEvent(ctx, auth.Event{Time: T0.Add(time.Duration(i) * time.Hour), Type: auth.EventLogin}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.DeleteEventsBefore(ctx, T0.Add(3*time.Hour), 2)
	if err != nil || n != 2 {
		t.Fatalf("first batch: %d, %v; want 2", n, err)
	}
	if n, err = s.DeleteEventsBefore(ctx, T0.Add(3*time.Hour), 2); err != nil || n != 1 {
		t.Fatalf("second batch: %d, %v; want 1", n, err)
	}
	if evs := eventsOf(t, s, ""); len(evs) != 2 || evs[0].Time.Before(T0.Add(3*time.Hour)) {
		t.Fatalf("left: %+v", evs)
	}
}
