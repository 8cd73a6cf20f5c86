package session

import (
	"testing"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// TestStoreAfterEvictIsRefused is the race the sequence number exists for:
// a read that began before an eviction must not cache what it read.
func TestStoreAfterEvictIsRefused(t *testing.T) {
	t.Parallel()
	c := NewCache(100)
	c.SetListening(true)
	snap := c.snapshot()
	c.Evict("s1") // a logout's notification, while the read was in flight
	c.storeSession(snap, "s1", entryOf(auth.Session{ID: "s1"}, false))
	if _, ok := c.session("s1"); ok {
		t.Fatal("a read from before an eviction was cached")
	}
	snap = c.snapshot()
	c.storeSession(snap, "s1", entryOf(auth.Session{ID: "s1"}, false))
	if _, ok := c.session("s1"); !ok {
		t.Fatal("a read with no eviction since was not cached")
	}
}

func TestNotListeningAnswersNothing(t *testing.T) {
	t.Parallel()
	c := NewCache(100)
	c.storeSession(c.snapshot(), "s1", sessionEntry{})
	if _, ok := c.session("s1"); ok {
		t.Fatal("cached while not listening")
	}
	c.SetListening(true)
	c.storeSession(c.snapshot(), "s1", sessionEntry{})
	snap := c.snapshot()
	c.SetListening(false)
	if _, ok := c.session("s1"); ok {
		t.Fatal("answered after the listener was lost")
	}
	c.SetListening(true)
	if _, ok := c.session("s1"); ok {
		t.Fatal("an entry from before the gap survived it")
	}
	c.storeSession(snap, "s2", sessionEntry{})
	if _, ok := c.session("s2"); ok {
		t.Fatal("a read from before the gap was cached after it")
	}
}

func TestCacheIsBounded(t *testing.T) {
	t.Parallel()
	c := NewCache(shardCount * 10)
	c.SetListening(true)
	for i := range 10_000 {
		c.storeSession(c.snapshot(), string(rune(i)), sessionEntry{})
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
		c.storeSession(c.snapshot(), id, entryOf(auth.Session{ID: id, DeviceID: device, Username: user}, false))
	}
	put("a1", "A", "u1")
	put("a2", "A", "u2")
	put("b1", "B", "u1")
	c.EvictDevice("A", "u1")
	if _, ok := c.session("a1"); ok {
		t.Fatal("A/u1 still cached")
	}
	if _, ok := c.session("a2"); !ok {
		t.Fatal("A/u2 evicted by a revoke of u1")
	}
	c.EvictDevice("A", "")
	if _, ok := c.session("a2"); ok {
		t.Fatal("A/u2 still cached after the whole device")
	}
	if _, ok := c.session("b1"); !ok {
		t.Fatal("device B evicted")
	}
}
