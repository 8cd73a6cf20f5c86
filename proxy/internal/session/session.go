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
}

// Config holds the lifetimes of sessions and the optional parts.
type Config struct {
	TTL          time.Duration // from login or the last refresh
	MaxAge       time.Duration // no refresh extends a session past this age
	RefreshGrace time.Duration // how long a token replaced by a refresh still works

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
	store  Store
	tokens *token.Signer
	cfg    Config
	now    func() time.Time
	log    *zap.Logger
}

// NewManager returns a Manager. now is the one clock every expiry decision
// uses.
func NewManager(store Store, tokens *token.Signer, cfg Config, now func() time.Time, log *zap.Logger) *Manager {
	return &Manager{store: store, tokens: tokens, cfg: cfg, now: now, log: log}
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
	if err := create(ctx, s); err != nil {
		return Issued{}, fmt.Errorf("create session: %w", err)
	}
	m.cfg.Metrics.Session("created", 1)
	tok, err := m.sign(s, now)
	if err != nil {
		return Issued{}, err
	}
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
	return m.check(ctx, s, claims, now)
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
		return Caller{}, m.refuse(s.ID, s.DeviceID, "token superseded by a refresh", auth.ErrInvalidToken)
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
	s, err := m.store.RefreshSession(ctx, c.Session.ID, c.TokenGeneration, now,
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
	err := m.store.RevokeSession(ctx, c.Session.ID, "", m.now())
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
	err := m.store.RevokeSession(ctx, id, deviceID, m.now())
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
	n, err := m.store.RevokeDevice(ctx, deviceID, username, m.now())
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
