package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

var importTests = []test{
	{"ImportUsersAddsSkipsAndCreatesDevices", testImportUsers},
	{"ImportUsersUpdateReplacesAndRevokes", testImportUsersUpdate},
	{"ImportUsersWithoutCommitWritesNothing", testImportUsersDryRun},
	{"CreateSessionUpgradingHash", testCreateSessionUpgradingHash},
	{"CreateSessionUpgradingHashKeepsAChangedHash", testCreateSessionUpgradingHashKeepsAChangedHash},
}

func testImportUsers(t *testing.T, s Store) {
	ctx := context.Background()
	addUser(t, s, "dev", "old", false)
	res, err := s.ImportUsers(ctx, []auth.ImportedUser{
		{DeviceID: "dev", Username: "old", PasswordHash: "imported-old"},
		{DeviceID: "dev", Username: "new", PasswordHash: "imported-new", IsAdmin: true},
		{DeviceID: "dev-2", Username: "x", PasswordHash: "imported-x"},
	}, false, true, T0)
	if err != nil {
		t.Fatal(err)
	}
	if res != (auth.ImportResult{Imported: 2, Skipped: 1}) {
		t.Fatalf("result %+v, want 2 imported, 1 skipped", res)
	}
	for user, want := range map[[2]string]string{{"dev", "old"}: "hash-of-old", {"dev", "new"}: "imported-new", {"dev-2", "x"}: "imported-x"} {
		u, hash, err := s.UserCredentials(ctx, user[0], user[1])
		if err != nil || hash != want {
			t.Fatalf("%v: hash %q, %v; want %q", user, hash, err, want)
		}
		if user[1] == "new" && !u.IsAdmin {
			t.Fatal("admin flag not imported")
		}
	}
	if n := countRows(t, s, "devices"); n != 2 {
		t.Fatalf("%d devices, want 2", n)
	}
}

func testImportUsersUpdate(t *testing.T, s Store) {
	ctx := context.Background()
	u := addUser(t, s, "dev", "old", false)
	live := newSession(t, s, u, T0, time.Hour)
	res, err := s.ImportUsers(ctx, []auth.ImportedUser{{DeviceID: "dev", Username: "old", PasswordHash: "imported", IsAdmin: true}}, true, true, T0)
	if err != nil {
		t.Fatal(err)
	}
	if res != (auth.ImportResult{Updated: 1}) {
		t.Fatalf("result %+v, want 1 updated", res)
	}
	got, hash, err := s.UserCredentials(ctx, "dev", "old")
	if err != nil || hash != "imported" || !got.IsAdmin || got.ID != u.ID {
		t.Fatalf("after update: %+v %q %v", got, hash, err)
	}
	sess, err := s.Session(ctx, live.ID)
	if err != nil || !sess.RevokedAt.Equal(T0) {
		t.Fatalf("the replaced user's session: revoked at %v, %v; want %v", sess.RevokedAt, err, T0)
	}
}

func testImportUsersDryRun(t *testing.T, s Store) {
	ctx := context.Background()
	u := addUser(t, s, "dev", "old", false)
	live := newSession(t, s, u, T0, time.Hour)
	res, err := s.ImportUsers(ctx, []auth.ImportedUser{
		{DeviceID: "dev", Username: "old", PasswordHash: "imported"},
		{DeviceID: "dev-2", Username: "new", PasswordHash: "imported"},
	}, true, false, T0)
	if err != nil {
		t.Fatal(err)
	}
	if res != (auth.ImportResult{Imported: 1, Updated: 1}) {
		t.Fatalf("result %+v, want what the import would do: 1 imported, 1 updated", res)
	}
	if _, hash, _ := s.UserCredentials(ctx, "dev", "old"); hash != "hash-of-old" {
		t.Fatalf("a dry run replaced a hash: %q", hash)
	}
	if _, _, err := s.UserCredentials(ctx, "dev-2", "new"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("a dry run added a user: %v", err)
	}
	if n := countRows(t, s, "devices"); n != 1 {
		t.Fatalf("a dry run added a device: %d", n)
	}
	if sess, _ := s.Session(ctx, live.ID); !sess.RevokedAt.IsZero() {
		t.Fatal("a dry run revoked a session")
	}
}

func testCreateSessionUpgradingHash(t *testing.T, s Store) {
	ctx := context.Background()
	u := addUser(t, s, "dev", "1111", false)
	sess := auth.Session{ID: "upgraded", DeviceID: "dev", UserID: u.ID, CreatedAt: T0, ExpiresAt: T0.Add(time.Hour)}
	if err := s.CreateSessionUpgradingHash(ctx, sess, "hash-of-1111", "argon2id-hash"); err != nil {
		t.Fatal(err)
	}
	if _, hash, _ := s.UserCredentials(ctx, "dev", "1111"); hash != "argon2id-hash" {
		t.Fatalf("hash %q, want the upgraded one", hash)
	}
	if _, err := s.Session(ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	// A session that cannot be created takes the upgrade with it.
	if err := s.CreateSessionUpgradingHash(ctx, sess, "argon2id-hash", "other"); !errors.Is(err, auth.ErrConflict) {
		t.Fatalf("a duplicate session: %v, want ErrConflict", err)
	}
	if _, hash, _ := s.UserCredentials(ctx, "dev", "1111"); hash != "argon2id-hash" {
		t.Fatalf("hash %q after a failed session: the upgrade did not roll back", hash)
	}
}

// A password changed between the login's check and its session keeps the
// new password: the upgrade only replaces the hash it was made from.
func testCreateSessionUpgradingHashKeepsAChangedHash(t *testing.T, s Store) {
	ctx := context.Background()
	u := addUser(t, s, "dev", "1111", false)
	sess := auth.Session{ID: "raced", DeviceID: "dev", UserID: u.ID, CreatedAt: T0, ExpiresAt: T0.Add(time.Hour)}
	if err := s.CreateSessionUpgradingHash(ctx, sess, "some-older-hash", "argon2id-hash"); err != nil {
		t.Fatal(err)
	}
	if _, hash, _ := s.UserCredentials(ctx, "dev", "1111"); hash != "hash-of-1111" {
		t.Fatalf("hash %q: an upgrade overwrote a password changed meanwhile", hash)
	}
}
