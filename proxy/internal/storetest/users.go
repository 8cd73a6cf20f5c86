package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

var userTests = []test{
	{"AddUserCreatesDevice", testAddUserCreatesDevice},
	{"AddUserDuplicateIsConflict", testAddUserDuplicateIsConflict},
	{"UserCredentials", testUserCredentials},
	{"UserCredentialsUnknownIsNotFound", testUserCredentialsUnknownIsNotFound},
	{"SetPasswordRevokesLiveSessions", testSetPasswordRevokesLiveSessions},
	{"SetPasswordUnknownUserIsNotFound", testSetPasswordUnknownUserIsNotFound},
	{"RemoveUserDeletesItsSessions", testRemoveUserDeletesItsSessions},
	{"ListUsersByDevice", testListUsersByDevice},
}

func testAddUserCreatesDevice(t *testing.T, s Store) {
	ctx := context.Background()
	u, err := s.AddUser(ctx, "VR-DEVICE-002", "1111", "hash", true)
	if err != nil {
		t.Fatal(err)
	}
	if u.ID == "" || u.DeviceID != "VR-DEVICE-002" || u.Username != "1111" || !u.IsAdmin || u.CreatedAt.IsZero() {
		t.Fatalf("AddUser returned %+v", u)
	}
	if n := countRows(t, s, "devices"); n != 1 {
		t.Fatalf("%d device rows, want 1", n)
	}
	// A second user on the same device reuses the device.
	v := addUser(t, s, "VR-DEVICE-002", "2222", false)
	if n := countRows(t, s, "devices"); n != 1 {
		t.Fatalf("%d device rows after a second user, want 1", n)
	}
	if v.ID == u.ID {
		t.Fatalf("two users share the id %s", u.ID)
	}
	// The device exists: a session can belong to it.
	newSession(t, s, v, T0, time.Hour)
}

func testAddUserDuplicateIsConflict(t *testing.T, s Store) {
	ctx := context.Background()
	addUser(t, s, "dev-a", "1111", false)

	if _, err := s.AddUser(ctx, "dev-a", "1111", "other", false); !errors.Is(err, auth.ErrConflict) {
		t.Fatalf("duplicate user: %v, want ErrConflict", err)
	}
	// The first user is untouched.
	if _, hash, err := s.UserCredentials(ctx, "dev-a", "1111"); err != nil || hash != "hash-of-1111" {
		t.Fatalf("after a duplicate: hash %q, %v", hash, err)
	}
	// Usernames are unique per device only.
	if _, err := s.AddUser(ctx, "dev-b", "1111", "hash", false); err != nil {
		t.Fatalf("same username on another device: %v", err)
	}
}

func testUserCredentials(t *testing.T, s Store) {
	ctx := context.Background()
	want := addUser(t, s, "dev", "1111", true)

	u, hash, err := s.UserCredentials(ctx, "dev", "1111")
	if err != nil {
		t.Fatal(err)
	}
	if hash != "hash-of-1111" {
		t.Fatalf("hash %q", hash)
	}
	if u.ID != want.ID || u.DeviceID != "dev" || u.Username != "1111" || !u.IsAdmin || !u.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("UserCredentials = %+v, want %+v", u, want)
	}
}

func testUserCredentialsUnknownIsNotFound(t *testing.T, s Store) {
	ctx := context.Background()
	addUser(t, s, "dev", "1111", false)

	for _, c := range []struct{ device, user string }{
		{"dev", "2222"},   // unknown user
		{"other", "1111"}, // unknown device
	} {
		if _, _, err := s.UserCredentials(ctx, c.device, c.user); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("UserCredentials(%q, %q): %v, want ErrNotFound", c.device, c.user, err)
		}
	}
}

func testSetPasswordRevokesLiveSessions(t *testing.T, s Store) {
	ctx := context.Background()
	now := T0
	u := addUser(t, s, "dev", "1111", false)
	other := addUser(t, s, "dev", "2222", false)
	live1 := newSession(t, s, u, now, time.Hour)
	live2 := newSession(t, s, u, now, time.Hour)
	expired := newSession(t, s, u, now.Add(-2*time.Hour), time.Hour)
	otherLive := newSession(t, s, other, now, time.Hour)

	got, revoked, err := s.SetPassword(ctx, "dev", "1111", "new-hash", now)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != u.ID || got.DeviceID != "dev" || got.Username != "1111" || !got.CreatedAt.Equal(u.CreatedAt) {
		t.Fatalf("SetPassword returned user %+v, want %+v", got, u)
	}
	if revoked != 2 {
		t.Fatalf("revoked %d sessions, want 2 (the live ones)", revoked)
	}
	if _, hash, _ := s.UserCredentials(ctx, "dev", "1111"); hash != "new-hash" {
		t.Fatalf("hash after SetPassword: %q", hash)
	}
	for _, id := range []string{live1.ID, live2.ID} {
		sess, err := s.Session(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !sess.RevokedAt.Equal(now) {
			t.Fatalf("session %s: revoked at %v, want %v", id, sess.RevokedAt, now)
		}
	}
	if sess, _ := s.Session(ctx, expired.ID); !sess.RevokedAt.IsZero() {
		t.Fatal("an already expired session was counted as revoked")
	}
	if sess, _ := s.Session(ctx, otherLive.ID); !sess.RevokedAt.IsZero() {
		t.Fatal("another user's session was revoked")
	}
	if _, hash, _ := s.UserCredentials(ctx, "dev", "2222"); hash != "hash-of-2222" {
		t.Fatalf("another user's hash changed to %q", hash)
	}
}

func testSetPasswordUnknownUserIsNotFound(t *testing.T, s Store) {
	addUser(t, s, "dev", "1111", false)
	if _, _, err := s.SetPassword(context.Background(), "dev", "2222", "h", T0); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("SetPassword of an unknown user: %v, want ErrNotFound", err)
	}
}

func testRemoveUserDeletesItsSessions(t *testing.T, s Store) {
	ctx := context.Background()
	now := T0
	u := addUser(t, s, "dev", "1111", false)
	other := addUser(t, s, "dev", "2222", false)
	a := newSession(t, s, u, now, time.Hour)
	b := newSession(t, s, u, now, time.Hour)
	revoked := newSession(t, s, u, now, time.Hour)
	if err := s.RevokeSession(ctx, revoked.ID, "", now); err != nil {
		t.Fatal(err)
	}
	keep := newSession(t, s, other, now, time.Hour)

	got, n, err := s.RemoveUser(ctx, "dev", "1111")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != u.ID || got.Username != "1111" || got.DeviceID != "dev" {
		t.Fatalf("RemoveUser returned %+v", got)
	}
	if n != 2 {
		t.Fatalf("RemoveUser ended %d sessions, want 2", n)
	}
	for _, id := range []string{a.ID, b.ID, revoked.ID} {
		if _, err := s.Session(ctx, id); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("session %s of the removed user: %v, want ErrNotFound", id, err)
		}
	}
	if _, err := s.Session(ctx, keep.ID); err != nil {
		t.Fatalf("another user's session: %v", err)
	}
	if _, _, err := s.UserCredentials(ctx, "dev", "1111"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("removed user still found: %v", err)
	}
	if n := countRows(t, s, "users"); n != 1 {
		t.Fatalf("%d users left, want 1", n)
	}
	if _, _, err := s.RemoveUser(ctx, "dev", "1111"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("removing again: %v, want ErrNotFound", err)
	}
}

func testListUsersByDevice(t *testing.T, s Store) {
	ctx := context.Background()
	addUser(t, s, "dev-b", "2222", false)
	addUser(t, s, "dev-a", "3333", false)
	addUser(t, s, "dev-a", "1111", true)

	names := func(us []auth.User) []string {
		var out []string
		for _, u := range us {
			out = append(out, u.DeviceID+"/"+u.Username)
		}
		return out
	}
	all, err := s.ListUsers(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(all), []string{"dev-a/1111", "dev-a/3333", "dev-b/2222"}; !slices.Equal(got, want) {
		t.Fatalf("ListUsers(\"\") = %v, want %v", got, want)
	}
	a, err := s.ListUsers(ctx, "dev-a")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(a), []string{"dev-a/1111", "dev-a/3333"}; !slices.Equal(got, want) {
		t.Fatalf("ListUsers(dev-a) = %v, want %v", got, want)
	}
	if !a[0].IsAdmin || a[1].IsAdmin || a[0].ID == "" || a[0].CreatedAt.IsZero() {
		t.Fatalf("ListUsers fields: %+v", a)
	}
	// Empty, not nil: it becomes a JSON [] rather than null.
	none, err := s.ListUsers(ctx, "dev-unknown")
	if err != nil || none == nil || len(none) != 0 {
		t.Fatalf("ListUsers of an unknown device = %#v, %v; want an empty list", none, err)
	}
}
