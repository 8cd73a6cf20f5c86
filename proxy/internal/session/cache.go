package session

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/token"
)

// Cache keeps, per replica, what the hot path would otherwise ask of the
// signature check and the database: verified tokens' claims, and sessions
// by id. It is correct only while the replica hears every change to a
// session (the store's change notifications): SetListening(false) empties
// it and stops it from answering until the replica listens again.
//
// The race it guards against: a request reads a live session from the
// database, a logout commits and its notification evicts the (not yet
// cached) entry, and then the request caches what it read — a revoked
// session cached as live. Every eviction and every change of listening
// state bumps a sequence number; a request notes it before reading the
// database, and its result is cached only if nothing was evicted since.
type Cache struct {
	tokens   shardedMap[tokenEntry]
	sessions shardedMap[sessionEntry]
	seq      atomic.Uint64 // bumped by every eviction and state change
	up       atomic.Bool   // listening: sessions may be served and stored
}

// NewCache returns a cache holding at most max tokens and max sessions. It
// starts not listening: it answers nothing until SetListening(true).
func NewCache(max int) *Cache {
	c := &Cache{}
	c.tokens.init(max)
	c.sessions.init(max)
	return c
}

type tokenEntry struct {
	claims token.Claims
}

// sessionEntry is what a request needs of a session. The user agent and
// client address stay in the database: they are for operators, and would
// double the memory per entry.
type sessionEntry struct {
	s    auth.Session
	gone bool // revoked or deleted: final, since ids are never reused
}

// verifiedToken returns the claims of a token verified before and not yet
// expired at now. Token verification does not depend on any session state,
// so this part of the cache never needs invalidating.
func (c *Cache) verifiedToken(raw string, now time.Time) (token.Claims, bool) {
	e, ok := c.tokens.get(raw)
	if !ok || !now.Before(e.claims.ExpiresAt) {
		return token.Claims{}, false
	}
	return e.claims, true
}

func (c *Cache) storeToken(raw string, claims token.Claims) {
	c.tokens.put(raw, tokenEntry{claims: claims})
}

// session returns the cached state of session id; ok is false on a miss or
// while not listening.
func (c *Cache) session(id string) (sessionEntry, bool) {
	if !c.up.Load() {
		return sessionEntry{}, false
	}
	return c.sessions.get(id)
}

// snapshot returns the sequence number to pass to storeSession after a
// database read.
func (c *Cache) snapshot() uint64 { return c.seq.Load() }

// storeSession caches what a database read returned, unless the cache has
// been told of any change since snap, or is not listening.
func (c *Cache) storeSession(snap uint64, e sessionEntry) {
	if !c.up.Load() {
		return
	}
	c.sessions.putIf(e.s.ID, e, func() bool { return c.seq.Load() == snap })
}

// Evict drops a session: it was revoked, refreshed, deleted or changed.
func (c *Cache) Evict(sessionID string) {
	c.seq.Add(1)
	c.sessions.remove(sessionID)
}

// SetListening says whether the replica hears every change from now on.
// Going down or coming up both empty the session cache: notifications may
// have been lost in between.
func (c *Cache) SetListening(up bool) {
	c.seq.Add(1)
	c.up.Store(up)
	c.seq.Add(1)
	c.sessions.clear()
}

// Listening reports whether the cache is answering.
func (c *Cache) Listening() bool { return c.up.Load() }

// Len returns how many tokens and sessions are cached.
func (c *Cache) Len() (tokens, sessions int) { return c.tokens.len(), c.sessions.len() }

// shardedMap is a bounded map split into shards, so that two cores looking
// up different keys do not wait on one lock. When a shard is full, an
// insert drops arbitrary entries (Go's map iteration order is random):
// the cache only ever loses speed, never correctness, by forgetting.
type shardedMap[V any] struct {
	seed   maphash.Seed
	shards [shardCount]shard[V]
}

const shardCount = 32

type shard[V any] struct {
	mu  sync.RWMutex
	m   map[string]V
	max int
}

func (sm *shardedMap[V]) init(max int) {
	sm.seed = maphash.MakeSeed()
	per := max / shardCount
	if per < 1 {
		per = 1
	}
	for i := range sm.shards {
		sm.shards[i].m = make(map[string]V)
		sm.shards[i].max = per
	}
}

func (sm *shardedMap[V]) shard(key string) *shard[V] {
	return &sm.shards[maphash.String(sm.seed, key)%shardCount]
}

func (sm *shardedMap[V]) get(key string) (V, bool) {
	s := sm.shard(key)
	s.mu.RLock()
	v, ok := s.m[key]
	s.mu.RUnlock()
	return v, ok
}

func (sm *shardedMap[V]) put(key string, v V) {
	sm.putIf(key, v, nil)
}

// putIf stores v under key if cond (checked under the shard's lock) holds.
func (sm *shardedMap[V]) putIf(key string, v V, cond func() bool) {
	s := sm.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if cond != nil && !cond() {
		return
	}
	if _, exists := s.m[key]; !exists && len(s.m) >= s.max {
		// Make room for a sixteenth of the shard at once, so that a full
		// cache does not pay for an eviction on every insert.
		drop := s.max/16 + 1
		for k := range s.m {
			delete(s.m, k)
			if drop--; drop == 0 {
				break
			}
		}
	}
	s.m[key] = v
}

func (sm *shardedMap[V]) remove(key string) {
	s := sm.shard(key)
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
}

func (sm *shardedMap[V]) clear() {
	for i := range sm.shards {
		s := &sm.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}

func (sm *shardedMap[V]) len() int {
	n := 0
	for i := range sm.shards {
		s := &sm.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
