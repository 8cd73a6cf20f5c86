package session

import (
	"context"
	"errors"
	"testing"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// loads counts the calls of a Loader that answers with s, running during
// (if not nil) while it "reads".
type loads struct {
	n      int
	s      auth.Session
	err    error
	during func()
}

func (l *loads) load(_ context.Context, id string) (auth.Session, error) {
	l.n++
	if l.during != nil {
		l.during()
	}
	s := l.s
	s.ID = id
	return s, l.err
}

// lookup asks c for id and reports whether the store was asked.
func lookup(t *testing.T, c *Cache, id string, l *loads) (loaded bool) {
	t.Helper()
	before := l.n
	if _, _, err := c.Session(context.Background(), id, 0, l.load); err != nil && !errors.Is(err, auth.ErrNotFound) {
		t.Fatal(err)
	}
	return l.n > before
}

// TestLoadRacingAnEvictionIsNotCached is the race the sequence number
// exists for: a read that began before an eviction must not cache what it
// read.
func TestLoadRacingAnEvictionIsNotCached(t *testing.T) {
	t.Parallel()
	c := NewCache(100)
	c.SetListening(true)
	l := &loads{during: func() { c.Evict("s1") }} // a logout's notification, while the read was in flight
	lookup(t, c, "s1", l)
	l.during = nil
	if !lookup(t, c, "s1", l) {
		t.Fatal("a read from before an eviction was cached")
	}
	if lookup(t, c, "s1", l) {
		t.Fatal("a read with no eviction since was not cached")
	}
}

// TestCreatedRacingAnEvictionIsNotCached: the same race for a session
// this replica writes: a change heard between the snapshot and the write's
// end (its user removed meanwhile) leaves it to the store.
func TestCreatedRacingAnEvictionIsNotCached(t *testing.T) {
	t.Parallel()
	c := NewCache(100)
	c.SetListening(true)
	snap := c.Snapshot()
	c.Evict("other") // any change: the cache cannot tell which sessions a removal ended
	c.Created(snap, "raw-token", auth.Session{ID: "s1"})
	l := &loads{}
	if !lookup(t, c, "s1", l) {
		t.Fatal("a session written across a change was cached")
	}
	c.Created(c.Snapshot(), "raw-token-2", auth.Session{ID: "s2"})
	if lookup(t, c, "s2", l) {
		t.Fatal("a session written with no change since was not cached")
	}
}

func TestNotListeningAnswersNothing(t *testing.T) {
	t.Parallel()
	c := NewCache(100)
	l := &loads{}
	lookup(t, c, "s1", l)
	if !lookup(t, c, "s1", l) {
		t.Fatal("cached while not listening")
	}
	c.SetListening(true)
	lookup(t, c, "s1", l)
	c.SetListening(false)
	if !lookup(t, c, "s1", l) {
		t.Fatal("answered after the listener was lost")
	}
	c.SetListening(true)
	if !lookup(t, c, "s1", l) {
		t.Fatal("an entry from before the gap survived it")
	}
	l.during = func() { c.SetListening(false); c.SetListening(true) }
	lookup(t, c, "s2", l)
	l.during = nil
	if !lookup(t, c, "s2", l) {
		t.Fatal("a read from before the gap was cached after it")
	}
}

// TestGoneIsCached: a session the store does not have, or has revoked, is
// refused from the cache next time.
func TestGoneIsCached(t *testing.T) {
	t.Parallel()
	c := NewCache(100)
	c.SetListening(true)
	gone := &loads{err: auth.ErrNotFound}
	lookup(t, c, "s1", gone)
	if _, hit, err := c.Session(context.Background(), "s1", 0, gone.load); !hit || !errors.Is(err, auth.ErrNotFound) || gone.n != 1 {
		t.Fatalf("hit %v, %v after %d loads; want a cached refusal", hit, err, gone.n)
	}
}

// TestNewerGenerationAsksTheStore: a token refreshed on another replica is
// of a generation the cached entry does not know.
func TestNewerGenerationAsksTheStore(t *testing.T) {
	t.Parallel()
	c := NewCache(100)
	c.SetListening(true)
	l := &loads{}
	lookup(t, c, "s1", l)
	if _, hit, _ := c.Session(context.Background(), "s1", 1, l.load); hit || l.n != 2 {
		t.Fatalf("generation 1 answered from an entry of generation 0 (hit %v, %d loads)", hit, l.n)
	}
}

func TestNilCacheAlwaysLoads(t *testing.T) {
	t.Parallel()
	var c *Cache
	l := &loads{}
	lookup(t, c, "s1", l)
	if !lookup(t, c, "s1", l) || c.Listening() {
		t.Fatal("a nil cache answered")
	}
	c.Evict("s1")
	c.EvictDevice("A", "")
}

func TestCacheIsBounded(t *testing.T) {
	t.Parallel()
	c := NewCache(shardCount * 10)
	c.SetListening(true)
	l := &loads{}
	for i := range 10_000 {
		lookup(t, c, string(rune(i)), l)
	}
	if _, n := c.Len(); n > shardCount*10 {
		t.Fatalf("%d sessions cached, bound is %d", n, shardCount*10)
	}
}

func TestEvictDevice(t *testing.T) {
	t.Parallel()
	c := NewCache(100)
	c.SetListening(true)
	put := func(id, device, user string) {
		lookup(t, c, id, &loads{s: auth.Session{DeviceID: device, Username: user}})
	}
	put("a1", "A", "u1")
	put("a2", "A", "u2")
	put("b1", "B", "u1")
	c.EvictDevice("A", "u1")
	l := &loads{}
	if !lookup(t, c, "a1", l) {
		t.Fatal("A/u1 still cached")
	}
	if lookup(t, c, "a2", l) {
		t.Fatal("A/u2 evicted by a revoke of u1")
	}
	c.EvictDevice("A", "")
	if !lookup(t, c, "a2", l) {
		t.Fatal("A/u2 still cached after the whole device")
	}
	if lookup(t, c, "b1", l) {
		t.Fatal("device B evicted")
	}
}
