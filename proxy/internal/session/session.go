// Package session issues, checks, refreshes and ends sessions. A session is
// a row in the store; the client holds a signed token that names it. Every
// request's token and session are checked — signature, revocation, expiry,
// refresh generation — before anything is forwarded: from the Cache when it
// knows the answer, else by verifying the signature and asking the store.
package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/cleanup"
	"github.com/authsidecar/authsidecar/proxy/internal/metrics"
	"github.com/authsidecar/authsidecar/proxy/internal/token"
)

// Store is where sessions live.
type Store interface {
	CreateSession(ctx context.Context, s auth.Session) error
	// CreateSessionUpgradingHash creates s and, in the same transaction,
	// replaces the user's password hash old with new (if it is still old).
	CreateSessionUpgradingHash(ctx context.Context, s auth.Session, old, new string) error
	Session(ctx context.Context, id string) (auth.Session, error)
	DeleteExpiredSession(ctx context.Context, id string, now time.Time) (bool, error)
	RefreshSession(ctx context.Context, id string, gen int64, now, expiresAt, prevValidUntil time.Time) (auth.Session, error)
	RevokeSession(ctx context.Context, id, deviceID string, now time.Time) error
	RevokeDevice(ctx context.Context, deviceID, username string, now time.Time) (int64, error)
	ListSessions(ctx context.Context, deviceID string, now time.Time) ([]auth.Session, error)
	DeleteExpired(ctx context.Context, now time.Time, limit int) (int64, error)
	// TouchSessions records uses of sessions (never moving one back).
	TouchSessions(ctx context.Context, uses []Use) error
	// RevokeOtherUsers ends the live sessions of a device that are not
	// keepUserID's, and returns how many.
	RevokeOtherUsers(ctx context.Context, deviceID, keepUserID string, now time.Time) (int64, error)
}

// Config holds the lifetimes of sessions and the optional parts.
type Config struct {
	TTL          time.Duration // from login or the last refresh
	MaxAge       time.Duration // no refresh extends a session past this age
	RefreshGrace time.Duration // how long a token replaced by a refresh still works
	// IdleTimeout, if positive, refuses a session unused for longer (see
	// idle for the bounds), on every replica.
	IdleTimeout time.Duration

	// Cache, if not nil, answers for verified tokens and live sessions
	// without the signature check or the database. It must be fed the
	// store's change notifications (see Cache).
	Cache *Cache
	// Metrics, if not nil, counts session events and cache lookups.
	Metrics *metrics.Metrics
	// Tracer, if not nil, records a span for each authentication, with
	// children for a signature check and a store lookup (see traced).
	Tracer trace.Tracer
}

// Manager issues and checks sessions.
type Manager struct {
	idle   *idle // nil without an idle timeout
	store  Store
	tokens *token.Signer
	cfg    Config
	now    func() time.Time
	log    *zap.Logger
}

// NewManager returns a Manager. now is the one clock every expiry decision
// uses.
func NewManager(store Store, tokens *token.Signer, cfg Config, now func() time.Time, log *zap.Logger) *Manager {
	m := &Manager{store: store, tokens: tokens, cfg: cfg, now: now, log: log}
	if cfg.IdleTimeout > 0 {
		m.idle = newIdle(cfg.IdleTimeout, log)
	}
	return m
}

// Client describes where a login came from, for operators.
type Client struct {
	Addr      string
	UserAgent string
}

// Caller is an authenticated request's session and the generation of the
// token it presented.
type Caller struct {
	Session         auth.Session
	TokenGeneration int64
}

// Issued is a session with the token that names it.
type Issued struct {
	Session auth.Session
	Token   string
}

// Create starts a session for user and signs its token.
func (m *Manager) Create(ctx context.Context, user auth.User, client Client) (Issued, error) {
	now := m.now()
	s := auth.Session{
		ID:         newID(),
		DeviceID:   user.DeviceID,
		UserID:     user.ID,
		Username:   user.Username,
		IsAdmin:    user.IsAdmin,
		CreatedAt:  now,
		ExpiresAt:  m.expiry(now, now),
		ClientAddr: truncate(client.Addr, 256),
		UserAgent:  truncate(client.UserAgent, 256),
	}
	create := m.store.CreateSession
	if user.UpgradedHash != "" {
		create = func(ctx context.Context, s auth.Session) error {
			return m.store.CreateSessionUpgradingHash(ctx, s, user.PasswordHash, user.UpgradedHash)
		}
	}
	rec := auth.Recording(ctx, auth.Event{Time: now, Type: auth.EventLogin, DeviceID: s.DeviceID, Username: s.Username,
		SessionID: s.ID, By: s.Username, ClientAddr: s.ClientAddr})
	snap := m.cfg.Cache.Snapshot()
	if err := create(rec, s); err != nil {
		return Issued{}, fmt.Errorf("create session: %w", err)
	}
	m.cfg.Metrics.Session("created", 1)
	tok, err := m.sign(s, now)
	if err != nil {
		return Issued{}, err
	}
	m.cfg.Cache.Created(snap, tok, s)
	m.log.Info("session created", zap.String("device_id", s.DeviceID), zap.String("session_id", s.ID),
		zap.String("username", s.Username), zap.Bool("admin", s.IsAdmin), zap.Time("expires_at", s.ExpiresAt))
	return Issued{Session: s, Token: tok}, nil
}

// Authenticate verifies a bearer token and checks that its session is live.
// Every failure wraps auth.ErrInvalidToken, except a store that cannot answer
// (auth.ErrUnavailable): then nothing is known, and the caller must refuse.
//
// With a Cache, a token verified before and a session known to be live are
// answered from memory: in the steady state a request costs no signature
// check and no database query.
func (m *Manager) Authenticate(ctx context.Context, raw string) (Caller, error) {
	if m.cfg.Tracer != nil {
		return m.traced(ctx, raw)
	}
	return m.authenticate(ctx, raw, m.tokens.Verify, m.store.Session)
}

// authenticate is Authenticate with the signature check and the store
// lookup that a cache miss calls.
func (m *Manager) authenticate(ctx context.Context, raw string, verify Verifier, load Loader) (Caller, error) {
	now := m.now()
	c := m.cfg.Cache

	claims, seen, hit, err := c.Claims(raw, now, verify)
	if c != nil {
		m.cfg.Metrics.TokenCache(hit)
	}
	if err != nil {
		level := zap.InfoLevel
		if errors.Is(err, token.ErrExpired) {
			if !seen {
				// A genuine token past its exp, met for the first time: its
				// session may have expired with it (unless a refresh
				// extended it), and is deleted when met.
				m.deleteIfExpired(ctx, claims.SessionID, claims.DeviceID)
			} else {
				level = zap.DebugLevel // a client repeating a token refused before
			}
		}
		msg := "session refused"
		if errors.Is(err, token.ErrExpired) {
			msg = "session expired"
		}
		return Caller{}, m.refuseWith(level, msg, claims.SessionID, claims.DeviceID, err.Error(), fmt.Errorf("%w: %w", auth.ErrInvalidToken, err))
	}

	listening := c.Listening()
	s, hit, err := c.Session(ctx, claims.SessionID, claims.Generation, load)
	if listening {
		m.cfg.Metrics.SessionCache(hit)
	} else if c != nil {
		m.cfg.Metrics.SessionCacheBypassed() // failing closed: see Cache
	}
	if errors.Is(err, auth.ErrNotFound) {
		level := zap.InfoLevel
		if hit {
			level = zap.DebugLevel // refused before, and told again
		}
		return Caller{}, m.refuseAt(level, claims.SessionID, claims.DeviceID, "session not found or revoked", auth.ErrInvalidToken)
	}
	if err != nil {
		return Caller{}, fmt.Errorf("session lookup: %w", err)
	}
	caller, err := m.check(ctx, s, claims, now)
	if err != nil || m.idle == nil {
		return caller, err
	}
	return m.checkIdle(ctx, caller, now)
}

// checkIdle refuses a session left unused for longer than the idle
// timeout, and records this use. A session that looks idle by what this
// replica knows is read afresh from the store, which may know of a later
// use on another replica; idle by the store too, it is revoked, so that
// every replica refuses it at once.
func (m *Manager) checkIdle(ctx context.Context, c Caller, now time.Time) (Caller, error) {
	s := c.Session
	if !m.idle.fresh(s.ID, s.LastSeenAt, now) {
		stored, err := m.store.Session(ctx, s.ID)
		if err != nil && !errors.Is(err, auth.ErrNotFound) {
			return Caller{}, fmt.Errorf("session lookup: %w", err)
		}
		if err != nil || !m.idle.fresh(s.ID, stored.LastSeenAt, now) {
			rec := auth.Recording(context.WithoutCancel(ctx), auth.Event{Time: now, Type: auth.EventRevoke, DeviceID: s.DeviceID,
				Username: s.Username, SessionID: s.ID, By: "system", Reason: "idle for longer than SESSION_IDLE_TIMEOUT"})
			if rerr := m.store.RevokeSession(rec, s.ID, "", now); rerr != nil && !errors.Is(rerr, auth.ErrNotFound) {
				m.log.Warn("could not revoke an idle session", zap.String("session_id", s.ID), zap.Error(rerr))
			}
			m.cfg.Cache.Evict(s.ID)
			m.cfg.Metrics.Session("idle", 1)
			return Caller{}, m.refuse(s.ID, s.DeviceID, "idle", auth.ErrInvalidToken)
		}
		s.LastSeenAt = stored.LastSeenAt
	}
	m.idle.use(s.ID, s.LastSeenAt, now)
	return c, nil
}

// EndOtherUsers ends the sessions of every user of deviceID but userID
// (ONE_USER_PER_DEVICE: the previous patient's sessions end when the next
// one logs in), and returns how many.
func (m *Manager) EndOtherUsers(ctx context.Context, deviceID, userID string) (int64, error) {
	now := m.now()
	rec := auth.Recording(ctx, auth.Event{Time: now, Type: auth.EventRevoke, DeviceID: deviceID, By: "system",
		Reason: "another user signed in on the device (ONE_USER_PER_DEVICE)"})
	n, err := m.store.RevokeOtherUsers(rec, deviceID, userID, now)
	if err != nil {
		return 0, fmt.Errorf("end other users' sessions: %w", err)
	}
	if n > 0 {
		m.cfg.Cache.EvictDevice(deviceID, "")
		m.cfg.Metrics.Session("revoked", n)
		m.log.Info("sessions revoked", zap.String("device_id", deviceID), zap.Int64("count", n),
			zap.String("by", "system"), zap.String("reason", "one user per device"))
	}
	return n, nil
}

// check decides on a session for a token's claims.
func (m *Manager) check(ctx context.Context, s auth.Session, claims token.Claims, now time.Time) (Caller, error) {
	switch {
	case !s.RevokedAt.IsZero():
		return Caller{}, m.refuse(s.ID, s.DeviceID, "revoked", auth.ErrInvalidToken)
	case !now.Before(s.ExpiresAt):
		m.deleteIfExpired(ctx, s.ID, s.DeviceID)
		return Caller{}, m.refuseWith(zap.InfoLevel, "session expired", s.ID, s.DeviceID, "session past its expiry", auth.ErrInvalidToken)
	case claims.Generation > s.Generation:
		// The store has every generation ever issued; a newer one in a
		// token means it was not ours to begin with.
		return Caller{}, m.refuse(s.ID, s.DeviceID, "token generation unknown", auth.ErrInvalidToken)
	case !s.AcceptsGeneration(claims.Generation, now):
		return Caller{}, m.refuse(s.ID, s.DeviceID, "token superseded by a refresh",
			&supersededError{sessionID: s.ID, deviceID: s.DeviceID, username: s.Username})
	}
	if ce := m.log.Check(zap.DebugLevel, "session found"); ce != nil {
		ce.Write(zap.String("device_id", s.DeviceID), zap.String("session_id", s.ID))
	}
	return Caller{Session: s, TokenGeneration: claims.Generation}, nil
}

// deleteIfExpired deletes a session met after its expiry, which keeps the
// table from holding rows that can never be used again; the janitor catches
// the ones never met. A failure is only logged: the request is refused
// either way.
func (m *Manager) deleteIfExpired(ctx context.Context, id, deviceID string) {
	if id == "" {
		return
	}
	deleted, err := m.store.DeleteExpiredSession(ctx, id, m.now())
	if err != nil {
		m.log.Warn("could not delete expired session", zap.String("session_id", id), zap.Error(err))
		return
	}
	if deleted {
		m.cfg.Cache.Evict(id)
		m.cfg.Metrics.Session("expired", 1)
		m.log.Debug("expired session deleted", zap.String("device_id", deviceID), zap.String("session_id", id))
	}
}

// refuse logs why a token was refused and returns err.
func (m *Manager) refuse(sessionID, deviceID, why string, err error) error {
	return m.refuseAt(zap.InfoLevel, sessionID, deviceID, why, err)
}

// refuseAt is refuse at a given level: a token refused again and again (a
// device retrying a revoked token) is logged at debug, so that a client
// cannot turn its retries into a flood of log lines.
func (m *Manager) refuseAt(level zapcore.Level, sessionID, deviceID, why string, err error) error {
	return m.refuseWith(level, "session refused", sessionID, deviceID, why, err)
}

// refuseWith is refuseAt with the log's message: "session expired" for a
// session that ended by its lifetime, as operators look for it.
func (m *Manager) refuseWith(level zapcore.Level, msg, sessionID, deviceID, why string, err error) error {
	if ce := m.log.Check(level, msg); ce != nil {
		ce.Write(zap.String("session_id", sessionID), zap.String("device_id", deviceID), zap.String("reason", why))
	}
	return err
}

// supersededError is the refusal of a token that a refresh replaced and
// whose grace has passed: presented for another refresh, it is a reused
// refresh token (see RefreshToken).
type supersededError struct{ sessionID, deviceID, username string }

func (e *supersededError) Error() string { return "token superseded by a refresh" }
func (e *supersededError) Unwrap() error { return auth.ErrInvalidToken }

// RefreshToken refreshes the session of a bearer token (see Refresh). A
// token that a refresh already replaced, presented after its grace, is a
// refresh token used twice: one of the two holders is not the owner, and
// there is no telling which (OAuth 2.0 Security BCP, refresh token reuse
// detection). The whole session is revoked, on every replica, and both
// must log in again.
func (m *Manager) RefreshToken(ctx context.Context, raw string) (Issued, error) {
	c, err := m.Authenticate(ctx, raw)
	var reused *supersededError
	if errors.As(err, &reused) {
		rec := auth.Recording(context.WithoutCancel(ctx), auth.Event{Time: m.now(), Type: auth.EventRefreshReused,
			DeviceID: reused.deviceID, Username: reused.username, SessionID: reused.sessionID, By: "system",
			Reason: "a refresh token presented again after its grace"})
		if rerr := m.store.RevokeSession(rec, reused.sessionID, "", m.now()); rerr != nil && !errors.Is(rerr, auth.ErrNotFound) {
			return Issued{}, fmt.Errorf("revoke a session whose refresh token was reused: %w", rerr)
		}
		m.cfg.Cache.Evict(reused.sessionID)
		m.cfg.Metrics.Session("refresh_reused", 1)
		m.log.Warn("refresh token reused; session revoked", zap.String("device_id", reused.deviceID),
			zap.String("session_id", reused.sessionID), zap.String("by", "proxy"), zap.String("reason", "refresh token reuse"))
		return Issued{}, err
	}
	if err != nil {
		return Issued{}, err
	}
	return m.Refresh(ctx, c)
}

// Refresh issues a new token for the caller's session, which then ends TTL
// from now (never past MaxAge from login). The caller's token keeps working
// for RefreshGrace. Of several refreshes of one token, one wins; the others
// get auth.ErrInvalidToken.
func (m *Manager) Refresh(ctx context.Context, c Caller) (Issued, error) {
	now := m.now()
	if c.TokenGeneration != c.Session.Generation {
		// A token already superseded may still be used inside its grace, but
		// it must not start a second chain.
		return Issued{}, m.refuse(c.Session.ID, c.Session.DeviceID, "refresh of a superseded token", auth.ErrInvalidToken)
	}
	rec := auth.Recording(ctx, auth.Event{Time: now, Type: auth.EventRefresh, DeviceID: c.Session.DeviceID,
		Username: c.Session.Username, SessionID: c.Session.ID, By: c.Session.Username})
	s, err := m.store.RefreshSession(rec, c.Session.ID, c.TokenGeneration, now,
		m.expiry(c.Session.CreatedAt, now), now.Add(m.cfg.RefreshGrace))
	m.cfg.Cache.Evict(c.Session.ID)
	if errors.Is(err, auth.ErrInvalidToken) {
		return Issued{}, m.refuse(c.Session.ID, c.Session.DeviceID, "refresh lost to a concurrent refresh or the session ended", err)
	}
	if err != nil {
		return Issued{}, fmt.Errorf("refresh session: %w", err)
	}
	tok, err := m.sign(s, now)
	if err != nil {
		return Issued{}, err
	}
	m.cfg.Metrics.Session("refreshed", 1)
	m.log.Info("session refreshed", zap.String("device_id", s.DeviceID), zap.String("session_id", s.ID),
		zap.Int64("generation", s.Generation), zap.Time("expires_at", s.ExpiresAt))
	return Issued{Session: s, Token: tok}, nil
}

// Logout ends the caller's session at once.
func (m *Manager) Logout(ctx context.Context, c Caller) error {
	now := m.now()
	rec := auth.Recording(ctx, auth.Event{Time: now, Type: auth.EventLogout, DeviceID: c.Session.DeviceID,
		Username: c.Session.Username, SessionID: c.Session.ID, By: c.Session.Username})
	err := m.store.RevokeSession(rec, c.Session.ID, "", now)
	m.cfg.Cache.Evict(c.Session.ID)
	if err != nil && !errors.Is(err, auth.ErrNotFound) {
		return fmt.Errorf("logout: %w", err)
	}
	m.cfg.Metrics.Session("revoked", 1)
	m.log.Info("session revoked", zap.String("device_id", c.Session.DeviceID), zap.String("session_id", c.Session.ID),
		zap.String("by", "owner"), zap.String("reason", "logout"))
	return nil
}

// Revoke ends one session. With deviceID set it only ends a session of that
// device: another device's session is auth.ErrNotFound. by and reason are
// logged for operators.
func (m *Manager) Revoke(ctx context.Context, id, deviceID, by, reason string) error {
	now := m.now()
	rec := auth.Recording(ctx, auth.Event{Time: now, Type: auth.EventRevoke, DeviceID: deviceID, SessionID: id, By: by, Reason: reason})
	err := m.store.RevokeSession(rec, id, deviceID, now)
	if err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	m.cfg.Cache.Evict(id)
	m.cfg.Metrics.Session("revoked", 1)
	m.log.Info("session revoked", zap.String("device_id", deviceID), zap.String("session_id", id),
		zap.String("by", by), zap.String("reason", reason))
	return nil
}

// RevokeDevice ends the live sessions of a device, or of one of its users
// when username is not empty, and returns how many it ended.
func (m *Manager) RevokeDevice(ctx context.Context, deviceID, username, by, reason string) (int64, error) {
	now := m.now()
	rec := auth.Recording(ctx, auth.Event{Time: now, Type: auth.EventRevoke, DeviceID: deviceID, Username: username, By: by, Reason: reason})
	n, err := m.store.RevokeDevice(rec, deviceID, username, now)
	if err != nil {
		return 0, fmt.Errorf("revoke device sessions: %w", err)
	}
	// The store's notifications evict each revoked session on every
	// replica; this one forgets them at once, so that its own answer holds.
	m.cfg.Cache.EvictDevice(deviceID, username)
	m.cfg.Metrics.Session("revoked", n)
	m.log.Info("sessions revoked", zap.String("device_id", deviceID), zap.String("username", username),
		zap.Int64("count", n), zap.String("by", by), zap.String("reason", reason))
	return n, nil
}

// Live reports whether session id is live now — not revoked, not
// expired, not gone — asking the store, not the cache: it is for what
// outlives a request (an open tunnel), asked right after a change.
func (m *Manager) Live(ctx context.Context, id string) (bool, error) {
	s, err := m.store.Session(ctx, id)
	if errors.Is(err, auth.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("session lookup: %w", err)
	}
	return s.RevokedAt.IsZero() && m.now().Before(s.ExpiresAt), nil
}

// Now is the clock the Manager decides expiry with.
func (m *Manager) Now() time.Time { return m.now() }

// List returns the live sessions, of one device when deviceID is not empty.
func (m *Manager) List(ctx context.Context, deviceID string) ([]auth.Session, error) {
	return m.store.ListSessions(ctx, deviceID, m.now())
}

// CleanupBatch is how many expired sessions one statement deletes.
const CleanupBatch = 5000

// Cleanup deletes every session expired by now, in batches, and returns how
// many it deleted.
func (m *Manager) Cleanup(ctx context.Context) (int64, error) {
	now := m.now()
	total, err := cleanup.InBatches(CleanupBatch, func(limit int) (int64, error) {
		return m.store.DeleteExpired(ctx, now, limit)
	})
	if err != nil {
		return total, fmt.Errorf("cleanup: %w", err)
	}
	m.cfg.Metrics.Session("cleaned", total)
	return total, nil
}

// expiry is when a session created at created and refreshed at now ends:
// TTL from now, capped at MaxAge from created, in whole seconds so that the
// token's exp and the session's expiry are the same instant.
func (m *Manager) expiry(created, now time.Time) time.Time {
	exp := now.Add(m.cfg.TTL)
	if m.cfg.MaxAge > 0 {
		if limit := created.Add(m.cfg.MaxAge); limit.Before(exp) {
			exp = limit
		}
	}
	return exp.Truncate(time.Second)
}

func (m *Manager) sign(s auth.Session, now time.Time) (string, error) {
	tok, err := m.tokens.Sign(token.Claims{
		SessionID: s.ID, Generation: s.Generation, Subject: s.UserID, DeviceID: s.DeviceID,
		IssuedAt: now, ExpiresAt: s.ExpiresAt,
	})
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return tok, nil
}

// newID returns 128 random bits in hex: safe in URLs, headers, logs and as
// a command-line argument (base64url could start with "-").
func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b)
}

// truncate cuts s to at most n bytes of valid UTF-8 without NUL: the store
// refuses both (PostgreSQL text cannot hold a NUL byte), and a client's
// User-Agent must not be able to fail a login.
func truncate(s string, n int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, ""), "\x00", "")
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}
