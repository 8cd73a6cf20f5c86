package session

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/token"
)

// Cache keeps, per replica, what the hot path would otherwise ask of the
// signature check and the database: verified tokens' claims, and sessions
// by id. The session half is correct only while the replica hears every
// change to a session (the store's change notifications): SetListening(false)
// empties it and stops it from answering until the replica listens again.
// The token half depends on no session state and always answers.
//
// The race it guards against: a request reads a live session from the
// database, a logout commits and its notification evicts the (not yet
// cached) entry, and then the request caches what it read — a revoked
// session cached as live. Every eviction and every change of listening
// state bumps a sequence number; a request notes it before reading the
// database, and its result is cached only if nothing was evicted since.
type Cache struct {
	tokens   shardedMap[[sha256.Size]byte, tokenEntry]
	sessions shardedMap[string, sessionEntry]
	seq      atomic.Uint64 // bumped by every eviction and state change
	up       atomic.Bool   // listening: sessions may be served and stored
}

// NewCache returns a cache holding at most max tokens and max sessions. It
// starts not listening: its session half answers nothing until
// SetListening(true).
func NewCache(max int) *Cache {
	c := &Cache{}
	c.tokens.init(max)
	c.sessions.init(max)
	return c
}

// tokenEntry is what the hot path needs of a verified token's claims. It
// is keyed by the SHA-256 of the token, not the token: 32 bytes instead of
// several hundred per entry, and no token kept in memory.
type tokenEntry struct {
	sessionID string
	deviceID  string
	gen       int64
	exp       int64 // unix seconds
	// expiryHandled: the token was met after its exp and its session dealt
	// with; meeting it again needs nothing but a refusal.
	expiryHandled bool
}

// sessionEntry is what a request needs of a session, in as few bytes as
// will do: the user agent and client address stay in the database (they
// are for operators), and times are unix nanoseconds.
type sessionEntry struct {
	deviceID, userID, username string
	isAdmin                    bool
	gone                       bool // revoked or deleted: final, since ids are never reused
	gen                        int64
	prevValidUntil             int64
	createdAt, expiresAt       int64
	lastSeen                   int64 // the store's record when cached
}

func entryOf(s auth.Session, gone bool) sessionEntry {
	return sessionEntry{
		deviceID: s.DeviceID, userID: s.UserID, username: s.Username, isAdmin: s.IsAdmin, gone: gone,
		gen: s.Generation, prevValidUntil: unixNano(s.PrevValidUntil),
		createdAt: unixNano(s.CreatedAt), expiresAt: unixNano(s.ExpiresAt), lastSeen: unixNano(s.LastSeenAt),
	}
}

// session rebuilds the session an entry was made from (less what it drops).
func (e sessionEntry) session(id string) auth.Session {
	return auth.Session{
		ID: id, DeviceID: e.deviceID, UserID: e.userID, Username: e.username, IsAdmin: e.isAdmin,
		Generation: e.gen, PrevValidUntil: fromUnixNano(e.prevValidUntil),
		CreatedAt: fromUnixNano(e.createdAt), ExpiresAt: fromUnixNano(e.expiresAt), LastSeenAt: fromUnixNano(e.lastSeen),
	}
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Verifier checks a token's signature and claims (token.Signer.Verify).
type Verifier func(raw string) (token.Claims, error)

// Claims returns the claims of a bearer token: from the cache when the
// token verified before, else from verify, whose answer it caches. Token
// verification depends on no session state, so this half of the cache
// never needs invalidating and answers whether or not it is listening. A
// nil Cache always verifies.
//
// A genuine token past its exp gets its claims with token.ErrExpired; seen
// reports that it was met expired before, so that its session was dealt
// with then and a refusal is all it needs now. hit reports a cached answer.
func (c *Cache) Claims(raw string, now time.Time, verify Verifier) (claims token.Claims, seen, hit bool, err error) {
	if c == nil {
		claims, err = verify(raw)
		return claims, false, false, err
	}
	if e, ok := c.tokens.get(tokenKey(raw)); ok {
		claims = token.Claims{SessionID: e.sessionID, DeviceID: e.deviceID, Generation: e.gen, ExpiresAt: time.Unix(e.exp, 0).UTC()}
		if now.Unix() < e.exp {
			return claims, false, true, nil
		}
		if !e.expiryHandled {
			c.storeToken(raw, claims, true)
		}
		return claims, e.expiryHandled, true, token.ErrExpired
	}
	claims, err = verify(raw)
	if err == nil || errors.Is(err, token.ErrExpired) {
		// An expired token's claims are genuine too (Verify returns them
		// only when everything else checked out); the caller handles its
		// expiry now.
		c.storeToken(raw, claims, err != nil)
	}
	return claims, false, false, err
}

// Loader reads a session from the store; auth.ErrNotFound when there is
// none.
type Loader func(ctx context.Context, id string) (auth.Session, error)

// Session returns session id: from the cache while it is listening and
// holds an entry that knows token generation gen, else from load, whose
// answer it caches — a live or revoked session, or that there is none —
// unless a change to any session was heard while load ran (see Cache). A
// session known to be revoked or gone is auth.ErrNotFound. A nil Cache
// always loads. hit reports a cached answer.
func (c *Cache) Session(ctx context.Context, id string, gen int64, load Loader) (s auth.Session, hit bool, err error) {
	if c == nil {
		s, err = load(ctx, id)
		return s, false, err
	}
	if c.up.Load() {
		if e, ok := c.sessions.get(id); ok {
			switch {
			case e.gone:
				return auth.Session{}, true, fmt.Errorf("session %s: revoked or gone (cached): %w", id, auth.ErrNotFound)
			case gen <= e.gen:
				return e.session(id), true, nil
			}
			// A token of a generation the entry does not know: a refresh
			// on another replica. The store knows.
		}
	}
	snap := c.seq.Load()
	s, err = load(ctx, id)
	switch {
	case errors.Is(err, auth.ErrNotFound):
		c.storeSession(snap, id, sessionEntry{gone: true})
	case err == nil:
		c.storeSession(snap, id, entryOf(s, !s.RevokedAt.IsZero()))
	}
	return s, false, err
}

// Snapshot returns the cache's change count, for Created: take it before
// writing the session.
func (c *Cache) Snapshot() uint64 {
	if c == nil {
		return 0
	}
	return c.seq.Load()
}

// Created caches a session this replica has just written, and its token's
// claims, so that the session's first request here (often its logout, or
// the upload it logged in for) costs no query and no signature check. snap
// is Snapshot() from before the write: a change heard since (its user
// removed meanwhile) leaves the session uncached, as for a read. Times are
// kept as the store keeps them (microseconds), so that a hit and a read
// answer alike.
func (c *Cache) Created(snap uint64, raw string, s auth.Session) {
	if c == nil {
		return
	}
	c.storeToken(raw, token.Claims{SessionID: s.ID, DeviceID: s.DeviceID, Generation: s.Generation, ExpiresAt: s.ExpiresAt}, false)
	s.CreatedAt, s.ExpiresAt = s.CreatedAt.Truncate(time.Microsecond), s.ExpiresAt.Truncate(time.Microsecond)
	s.LastSeenAt = s.CreatedAt // the store reads a session never seen as seen at its creation
	c.storeSession(snap, s.ID, entryOf(s, false))
}

// tokenKey is the token cache's key for a raw token: its SHA-256, so that
// the cache holds no usable token. A token of the usual few hundred bytes
// is copied to the stack first: converting it with []byte(raw) would
// allocate on every request, as the compiler keeps only 32 bytes there.
func tokenKey(raw string) [sha256.Size]byte {
	var buf [1024]byte
	if len(raw) <= len(buf) {
		return sha256.Sum256(buf[:copy(buf[:], raw)])
	}
	return sha256.Sum256([]byte(raw))
}

// storeToken caches a verified token's claims; expiryHandled as above.
func (c *Cache) storeToken(raw string, claims token.Claims, expiryHandled bool) {
	c.tokens.put(tokenKey(raw), tokenEntry{
		sessionID: claims.SessionID, deviceID: claims.DeviceID, gen: claims.Generation, exp: claims.ExpiresAt.Unix(),
		expiryHandled: expiryHandled,
	})
}

// storeSession caches what a database read returned, unless the cache has
// been told of any change since snap (read from seq before the read), or
// is not listening.
func (c *Cache) storeSession(snap uint64, id string, e sessionEntry) {
	if !c.up.Load() {
		return
	}
	c.sessions.putIf(id, e, func() bool { return c.seq.Load() == snap })
}

// Evict drops a session: it was revoked, refreshed, deleted or changed. A
// nil Cache has nothing to drop.
func (c *Cache) Evict(sessionID string) {
	if c == nil {
		return
	}
	c.seq.Add(1)
	c.sessions.remove(sessionID)
}

// EvictDevice drops every cached session of a device, or of one of its
// users when username is not empty: what a bulk revocation on this replica
// ended, before the notifications for each session arrive. It walks the
// whole cache; bulk revocations are rare.
func (c *Cache) EvictDevice(deviceID, username string) {
	if c == nil {
		return
	}
	c.seq.Add(1)
	c.sessions.removeWhere(func(e sessionEntry) bool {
		return e.deviceID == deviceID && (username == "" || e.username == username)
	})
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

// Listening reports whether the cache is answering for sessions; a nil
// Cache never is.
func (c *Cache) Listening() bool { return c != nil && c.up.Load() }

// Len returns how many tokens and sessions are cached.
func (c *Cache) Len() (tokens, sessions int) { return c.tokens.len(), c.sessions.len() }

// shardedMap is a bounded map split into shards, so that two cores looking
// up different keys do not wait on one lock. When a shard is full, an
// insert drops arbitrary entries (Go's map iteration order is random):
// the cache only ever loses speed, never correctness, by forgetting.
type shardedMap[K comparable, V any] struct {
	seed   maphash.Seed
	shards [shardCount]shard[K, V]
}

const shardCount = 32

type shard[K comparable, V any] struct {
	mu  sync.RWMutex
	m   map[K]V
	max int
}

func (sm *shardedMap[K, V]) init(max int) {
	sm.seed = maphash.MakeSeed()
	per := max / shardCount
	if per < 1 {
		per = 1
	}
	for i := range sm.shards {
		sm.shards[i].m = make(map[K]V)
		sm.shards[i].max = per
	}
}

func (sm *shardedMap[K, V]) shard(key K) *shard[K, V] {
	return &sm.shards[maphash.Comparable(sm.seed, key)%shardCount]
}

func (sm *shardedMap[K, V]) get(key K) (V, bool) {
	s := sm.shard(key)
	s.mu.RLock()
	v, ok := s.m[key]
	s.mu.RUnlock()
	return v, ok
}

func (sm *shardedMap[K, V]) put(key K, v V) {
	sm.putIf(key, v, nil)
}

// putIf stores v under key if cond (checked under the shard's lock) holds.
func (sm *shardedMap[K, V]) putIf(key K, v V, cond func() bool) {
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

func (sm *shardedMap[K, V]) remove(key K) {
	s := sm.shard(key)
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
}

func (sm *shardedMap[K, V]) removeWhere(match func(V) bool) {
	for i := range sm.shards {
		s := &sm.shards[i]
		s.mu.Lock()
		for k, v := range s.m {
			if match(v) {
				delete(s.m, k)
			}
		}
		s.mu.Unlock()
	}
}

func (sm *shardedMap[K, V]) clear() {
	for i := range sm.shards {
		s := &sm.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}

func (sm *shardedMap[K, V]) len() int {
	n := 0
	for i := range sm.shards {
		s := &sm.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
