// Package client is a Go client for the authsidecar proxy, for headsets and
// for tools that act like one.
//
// It does what docs/headsets.md asks of every headset app, so that callers
// never handle tokens themselves:
//
//   - it logs in lazily, on the first call that needs a token;
//   - it refreshes the token before expiresAt (proactively, within a margin),
//     so that a long session never meets a 401 in the first place;
//   - on a 401 it logs in again and retries the request once — a token can
//     still be refused (revoked by an admin, a password change), and one
//     fresh login is the cure; a second 401 is returned, never looped on;
//   - it treats any 2xx as success (201 created, 200 replaced);
//   - it never retries a 429 or a 5xx: a lockout must be waited out and an
//     outage may last, and only the caller knows whether waiting is worth it.
//     Both come back as *APIError (errors.Is with ErrLockedOut,
//     ErrUnavailable; RetryAfter from the header). A refused or reset
//     connection is not retried either, and matches ErrUnavailable too.
//
// A headset without a keyboard signs in with the device authorization grant
// instead of a password: see WithDeviceGrant.
//
// A Client is safe for concurrent use. Logins, refreshes and logouts run one
// at a time, and a goroutine that finds the token already replaced by another
// uses the new one: fifty goroutines that meet the same 401 cause one login,
// not fifty (which would also count as fifty attempts against the lockout).
//
// The package has no global state and logs nothing: every outcome is a
// return value.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Credentials identify one account: a user on a device.
type Credentials struct {
	DeviceID string
	Username string
	Password string
}

// User is the account a session belongs to.
type User struct {
	ID       string `json:"id"`
	Username string `json:"username"`
	DeviceID string `json:"deviceId"`
	IsAdmin  bool   `json:"isAdmin"`
}

// Session is the answer to a login or a refresh.
type Session struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
	User      User      `json:"user"`
}

// SessionInfo is the answer to GET /api/auth/session: what the proxy knows
// about the session behind the current token.
type SessionInfo struct {
	SessionID string    `json:"sessionId"`
	ExpiresAt time.Time `json:"expiresAt"`
	IsAdmin   bool      `json:"isAdmin"`
	User      User      `json:"user"`
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (transport, timeouts). The default has
// a 30 s timeout: a headset must not hang forever on a dead connection.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithClock sets the clock used to decide when to refresh; tests move it.
func WithClock(now func() time.Time) Option {
	return func(c *Client) {
		if now != nil {
			c.now = now
		}
	}
}

// WithRefreshMargin makes the client refresh once less than d is left before
// expiresAt. Without it the margin is 10% of the token's lifetime or 5
// minutes, whichever is smaller: a 24 h token is refreshed 5 minutes early,
// a 1 minute token 6 seconds early. A margin of 0 refreshes only at expiry.
func WithRefreshMargin(d time.Duration) Option {
	return func(c *Client) {
		if d < 0 {
			d = 0
		}
		c.margin, c.fixedMargin = d, true
	}
}

// maxResponse bounds what is read of one answer; storage records are at
// most MAX_BODY_BYTES (1 MiB by default), so this is generous.
const maxResponse = 64 << 20

// Client talks to one proxy as one account.
type Client struct {
	base        string
	creds       Credentials
	hc          *http.Client
	now         func() time.Time
	margin      time.Duration
	fixedMargin bool
	// deviceShow, when set, makes logins the device grant (see
	// WithDeviceGrant); sleep waits between its polls.
	deviceShow func(DeviceCode)
	sleep      func(ctx context.Context, d time.Duration) error

	// authSem admits one login, refresh or logout at a time. A channel
	// rather than a sync.Mutex so that a caller waiting behind a slow login
	// can give up when its context ends.
	authSem chan struct{}

	mu  sync.Mutex // guards tok
	tok tokenState
}

// tokenState is the current token; the zero value means "not logged in".
type tokenState struct {
	token     string
	expiresAt time.Time
	obtained  time.Time // by our clock, to know the lifetime for the margin
	session   Session
}

// New returns a client for the proxy at baseURL (e.g. http://127.0.0.1:8080).
// It does not contact the proxy: the first call that needs a token logs in.
func New(baseURL string, creds Credentials, opts ...Option) *Client {
	c := &Client{
		base:    strings.TrimRight(baseURL, "/"),
		creds:   creds,
		hc:      &http.Client{Timeout: 30 * time.Second},
		now:     time.Now,
		sleep:   sleepCtx,
		authSem: make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Login logs in now, replacing any current token, and returns the session.
func (c *Client) Login(ctx context.Context) (Session, error) {
	if err := c.lockAuth(ctx); err != nil {
		return Session{}, err
	}
	defer c.unlockAuth()
	return c.loginLocked(ctx)
}

// Refresh exchanges the current token for a new one now. Without a token it
// logs in; if the proxy refuses the token (401) it logs in instead, because
// a caller asking for a fresh token wants one either way.
func (c *Client) Refresh(ctx context.Context) (Session, error) {
	if err := c.lockAuth(ctx); err != nil {
		return Session{}, err
	}
	defer c.unlockAuth()
	st := c.state()
	if st.token == "" {
		return c.loginLocked(ctx)
	}
	s, err := c.refreshLocked(ctx, st.token)
	if errors.Is(err, ErrUnauthorized) {
		return c.loginLocked(ctx)
	}
	return s, err
}

// Logout ends the session on the proxy and forgets the token; the next call
// logs in again. Without a token it does nothing. A 401 counts as done: the
// session it would end is already gone. On any other error the token is
// kept, so that Logout can be tried again.
func (c *Client) Logout(ctx context.Context) error {
	if err := c.lockAuth(ctx); err != nil {
		return err
	}
	defer c.unlockAuth()
	st := c.state()
	if st.token == "" {
		return nil
	}
	_, err := c.send(ctx, http.MethodPost, "/api/auth/logout", st.token, nil, nil)
	if err != nil && !errors.Is(err, ErrUnauthorized) {
		return err
	}
	c.setState(tokenState{})
	return nil
}

// Session returns what the proxy knows about the current session
// (GET /api/auth/session), logging in first if needed.
func (c *Client) Session(ctx context.Context) (SessionInfo, error) {
	var out SessionInfo
	_, err := c.do(ctx, http.MethodGet, "/api/auth/session", nil, &out)
	return out, err
}

// Do sends an authenticated request to any path behind the proxy (the proxy
// fronts any backend), with the same login, refresh and retry rules as the
// typed calls. in, when not nil, is sent as JSON; a 2xx answer with a body
// is decoded into out when out is not nil. It returns the status of a 2xx
// answer; anything else is an error.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) (int, error) {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("authsidecar: encode request: %w", err)
		}
		body = b
	}
	return c.do(ctx, method, path, body, out)
}

// do is every authenticated call: a token (logging in or refreshing first if
// needed), the request, and on a 401 one fresh login and one retry. body is
// bytes, not a reader, so that the retry sends the same thing again.
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) (int, error) {
	tok, err := c.token(ctx)
	if err != nil {
		return 0, err
	}
	status, err := c.send(ctx, method, path, tok, body, out)
	if !errors.Is(err, ErrUnauthorized) {
		return status, err
	}
	tok, err = c.reauth(ctx, tok)
	if err != nil {
		return 0, err
	}
	// A second 401 is returned as it is: looping would hammer the proxy and
	// could never succeed.
	return c.send(ctx, method, path, tok, body, out)
}

// token returns a token fit to use: the current one, or a new one after a
// lazy login or a proactive refresh.
func (c *Client) token(ctx context.Context) (string, error) {
	if st := c.state(); st.token != "" && !c.needsRefresh(st) {
		return st.token, nil
	}
	if err := c.lockAuth(ctx); err != nil {
		return "", err
	}
	defer c.unlockAuth()
	// Another goroutine may have logged in or refreshed while we waited.
	st := c.state()
	if st.token != "" && !c.needsRefresh(st) {
		return st.token, nil
	}
	if st.token == "" || c.expired(st) {
		// An expired token cannot be refreshed; the proxy would refuse it.
		s, err := c.loginLocked(ctx)
		return s.Token, err
	}
	s, err := c.refreshLocked(ctx, st.token)
	switch {
	case err == nil:
		return s.Token, nil
	case errors.Is(err, ErrUnauthorized):
		// Revoked, or past SESSION_MAX_AGE: only a login helps.
		s, err := c.loginLocked(ctx)
		return s.Token, err
	case !c.expired(st):
		// The refresh was early on purpose; while the token lasts, a
		// failed refresh (proxy restarting) need not fail the request.
		// The next call tries again.
		return st.token, nil
	}
	return "", err
}

// reauth follows a 401 for stale: it logs in, unless another goroutine has
// already replaced stale, in which case its token is used. This is what
// turns fifty simultaneous 401s into one login.
func (c *Client) reauth(ctx context.Context, stale string) (string, error) {
	if err := c.lockAuth(ctx); err != nil {
		return "", err
	}
	defer c.unlockAuth()
	if st := c.state(); st.token != "" && st.token != stale {
		return st.token, nil
	}
	s, err := c.loginLocked(ctx)
	return s.Token, err
}

// loginLocked logs in; the caller holds authSem.
func (c *Client) loginLocked(ctx context.Context) (Session, error) {
	if c.deviceShow != nil {
		return c.deviceLoginLocked(ctx)
	}
	body, err := json.Marshal(map[string]string{
		"deviceId": c.creds.DeviceID, "username": c.creds.Username, "password": c.creds.Password,
	})
	if err != nil {
		return Session{}, err
	}
	var s Session
	if _, err := c.send(ctx, http.MethodPost, "/api/auth/login", "", body, &s); err != nil {
		return Session{}, err
	}
	c.store(s)
	return s, nil
}

// refreshLocked exchanges tok for a new token; the caller holds authSem.
func (c *Client) refreshLocked(ctx context.Context, tok string) (Session, error) {
	var s Session
	if _, err := c.send(ctx, http.MethodPost, "/api/auth/refresh", tok, nil, &s); err != nil {
		return Session{}, err
	}
	c.store(s)
	return s, nil
}

func (c *Client) store(s Session) {
	c.setState(tokenState{token: s.Token, expiresAt: s.ExpiresAt, obtained: c.now(), session: s})
}

func (c *Client) state() tokenState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tok
}

func (c *Client) setState(st tokenState) {
	c.mu.Lock()
	c.tok = st
	c.mu.Unlock()
}

func (c *Client) lockAuth(ctx context.Context) error {
	select {
	case c.authSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) unlockAuth() { <-c.authSem }

// needsRefresh: less than the margin is left before expiresAt. A session
// without expiresAt is never refreshed early; a 401 still cures it. Clock
// skew between headset and proxy is covered the same way.
func (c *Client) needsRefresh(st tokenState) bool {
	if st.expiresAt.IsZero() {
		return false
	}
	margin := c.margin
	if !c.fixedMargin {
		margin = min(st.expiresAt.Sub(st.obtained)/10, 5*time.Minute)
		if margin < 0 {
			margin = 0
		}
	}
	return !c.now().Before(st.expiresAt.Add(-margin))
}

func (c *Client) expired(st tokenState) bool {
	return !st.expiresAt.IsZero() && !c.now().Before(st.expiresAt)
}

// send makes one request. tok may be empty (login). A 2xx answer is
// success, whatever the number; its body is decoded into out. Anything else
// is an *APIError. A transport failure keeps the *url.Error it is, so that
// errors.Is(err, syscall.ECONNREFUSED) still works; one that means the
// proxy could not be reached also matches ErrUnavailable (see unreachable).
func (c *Client) send(ctx context.Context, method, path, tok string, body []byte, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, fmt.Errorf("authsidecar: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if unreachable(err) {
			return 0, &unreachableError{err: err}
		}
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return 0, fmt.Errorf("authsidecar: %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, newAPIError(method, path, resp, data, c.now())
	}
	if out != nil && len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("authsidecar: %s %s: decode %d answer: %w", method, path, resp.StatusCode, err)
		}
	}
	return resp.StatusCode, nil
}
