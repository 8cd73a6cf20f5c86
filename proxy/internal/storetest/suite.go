package storetest

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// T0 is the suite's clock: a fixed time in whole microseconds, as both
// stores keep them, with a fraction that shows when one is lost.
var T0 = time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)

// test is one behaviour of a store.
type test struct {
	name string
	run  func(t *testing.T, s Store)
}

// Run runs every behaviour of the suite as a parallel subtest of t, each on
// a store of its own that open returns: empty, migrated, and able to serve
// at least 26 concurrent calls (the concurrency tests meet in the database,
// not in a pool's queue). open registers with t whatever cleanup the store
// needs.
func Run(t *testing.T, open func(t *testing.T) Store) {
	t.Helper()
	var all []test
	for _, group := range [][]test{userTests, importTests, eventTests, idleTests, sessionTests, lockoutTests, keyTests, deviceGrantTests, otherTests} {
		all = append(all, group...)
	}
	for _, tc := range all {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, open(t))
		})
	}
}

var otherTests = []test{
	{"Ping", testPing},
	{"TryExclusive", testTryExclusive},
}

func testPing(t *testing.T, s Store) {
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// The janitor's lock: one holder at a time per name. (Each store's own
// tests show it across processes or replicas.)
func testTryExclusive(t *testing.T, s Store) {
	ctx := context.Background()
	release, ok, err := s.TryExclusive(ctx, "janitor")
	if err != nil || !ok {
		t.Fatalf("first TryExclusive = %v, %v; want the lock", ok, err)
	}
	if _, ok, err := s.TryExclusive(ctx, "janitor"); err != nil || ok {
		t.Fatalf("second TryExclusive while held = %v, %v; want not ok", ok, err)
	}
	// Another name is another lock.
	other, ok, err := s.TryExclusive(ctx, "something else")
	if err != nil || !ok {
		t.Fatalf("another name = %v, %v; want the lock", ok, err)
	}
	other()

	release()
	again, ok, err := s.TryExclusive(ctx, "janitor")
	if err != nil || !ok {
		t.Fatalf("after release = %v, %v; want the lock", ok, err)
	}
	again()
}

// helpers

func countRows(t *testing.T, s Store, table string) int64 {
	t.Helper()
	n, err := s.CountRows(context.Background(), table)
	if err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func addUser(t *testing.T, s Store, deviceID, username string, isAdmin bool) auth.User {
	t.Helper()
	u, err := s.AddUser(context.Background(), deviceID, username, "hash-of-"+username, isAdmin)
	if err != nil {
		t.Fatalf("add user %s/%s: %v", deviceID, username, err)
	}
	return u
}

var sessionSeq atomic.Int64

// newSession stores a session of user u created at created that expires
// ttl later, and returns it. A session created in the past is how the suite
// makes expired ones.
func newSession(t *testing.T, s Store, u auth.User, created time.Time, ttl time.Duration) auth.Session {
	t.Helper()
	sess := auth.Session{
		ID: "sess-" + strconv.FormatInt(sessionSeq.Add(1), 10), DeviceID: u.DeviceID,
		UserID: u.ID, Username: u.Username, IsAdmin: u.IsAdmin,
		CreatedAt: created, ExpiresAt: created.Add(ttl),
	}
	if err := s.CreateSession(context.Background(), sess); err != nil {
		t.Fatalf("create session: %v", err)
	}
	return sess
}

func ids(list []auth.Session) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.ID)
	}
	return out
}
