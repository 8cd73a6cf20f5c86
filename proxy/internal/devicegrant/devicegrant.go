// Package devicegrant is the device authorization grant (RFC 8628): a
// headset without a keyboard asks for a code, shows it, and polls; a person
// opens the approval page on a phone or a computer, types the code, a
// username and a PIN, and the headset's poll receives a session of that
// user — the same session a login would have started, through the login
// use case, so that every rule of logins (lockout, the shared-headset rules)
// holds for approvals too.
//
// The store keeps each request with its device code hashed; the approval's
// token waits there sealed to a key only the device code opens (see
// codes.go). A poll is held open for a few seconds and answered as soon as
// the request is decided, on whichever replica the decision was made: the
// store notifies every replica (PostgreSQL's NOTIFY, on the channel that
// carries session changes), and Wake wakes the polls waiting here.
package devicegrant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/cleanup"
	"github.com/authsidecar/authsidecar/proxy/internal/identity"
	"github.com/authsidecar/authsidecar/proxy/internal/login"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
)

// NotifyPrefix starts the payload of a store notification that names a
// device authorization request (the rest is its ID) rather than a session.
const NotifyPrefix = "device:"

// Store is where device authorization requests live.
type Store interface {
	// CreateDeviceCode stores a new pending request. auth.ErrConflict: its
	// user code belongs to a request that has not expired by c.CreatedAt
	// (an expired one with the same user code is replaced).
	CreateDeviceCode(ctx context.Context, c auth.DeviceCode) error
	// DeviceCodeByHash finds a request by the SHA-256 of its device code,
	// whatever its state; auth.ErrNotFound when there is none.
	DeviceCodeByHash(ctx context.Context, hash string) (auth.DeviceCode, error)
	// DeviceCodeByUserCode finds a request by its user code, whatever its
	// state; auth.ErrNotFound when there is none.
	DeviceCodeByUserCode(ctx context.Context, userCode string) (auth.DeviceCode, error)
	// PollDeviceCode records a poll at now with the request's interval,
	// if its last poll is still prev (zero: never polled), and returns the
	// request as it is then. auth.ErrNotFound: another poll came first.
	PollDeviceCode(ctx context.Context, id string, prev, now time.Time, interval time.Duration) (auth.DeviceCode, error)
	// DecideDeviceCode approves or denies a request that is pending and
	// has not expired by d.At, writes the event ctx carries in the same
	// transaction and notifies every replica; auth.ErrNotFound when the
	// request is not pending (any more) or has expired.
	DecideDeviceCode(ctx context.Context, id string, d auth.DeviceDecision) error
	// RedeemDeviceCode marks an approved request redeemed and returns its
	// sealed token, which it forgets; auth.ErrNotFound when the request is
	// not approved (any more): one approval yields one token.
	RedeemDeviceCode(ctx context.Context, id string, now time.Time) ([]byte, error)
	// ReserveDeviceGuess counts one unknown user code against clientAddr
	// before the code is looked up, in a window of its own that starts
	// with its first guess: ok is false, and nothing counted, when max were
	// counted already in the window, which ends at windowEnds.
	ReserveDeviceGuess(ctx context.Context, clientAddr string, now time.Time, window time.Duration, max int) (ok bool, windowEnds time.Time, err error)
	// ReleaseDeviceGuess takes back a reserved guess whose code was right.
	ReleaseDeviceGuess(ctx context.Context, clientAddr string) error
	// DeleteDeviceCodesExpiredBefore deletes up to limit requests that
	// expired before before, and returns how many.
	DeleteDeviceCodesExpiredBefore(ctx context.Context, before time.Time, limit int) (int64, error)
	// DeleteDeviceGuessesBefore deletes up to limit guess windows that
	// started before before, and returns how many.
	DeleteDeviceGuessesBefore(ctx context.Context, before time.Time, limit int) (int64, error)
}

// Config is the grant's policy. Zero fields take the defaults.
type Config struct {
	// CodeTTL is how long a request may wait for a decision. Default 10m.
	CodeTTL time.Duration
	// Interval is how long a device waits between polls (whole seconds).
	// Default 5s.
	Interval time.Duration
	// MaxHold is the longest a poll is held open waiting for a decision
	// (at most the interval). Default 5s.
	MaxHold time.Duration
	// MaxGuesses unknown user codes are allowed per client address per
	// GuessWindow. Default 10 per minute.
	MaxGuesses  int
	GuessWindow time.Duration
}

func (c *Config) defaults() {
	if c.CodeTTL <= 0 {
		c.CodeTTL = 10 * time.Minute
	}
	if c.Interval < time.Second {
		c.Interval = 5 * time.Second
	}
	c.Interval = c.Interval.Truncate(time.Second)
	if c.MaxHold <= 0 {
		c.MaxHold = 5 * time.Second
	}
	if c.MaxGuesses <= 0 {
		c.MaxGuesses = 10
	}
	if c.GuessWindow <= 0 {
		c.GuessWindow = time.Minute
	}
}

// slowDownStep is what each slow_down adds to a request's interval (RFC
// 8628 §3.5).
const slowDownStep = 5 * time.Second

// ExpiredKeep is how long a request is kept after it expires, so that a
// late poll hears expired_token rather than invalid_grant, before the
// janitor deletes it.
const ExpiredKeep = time.Hour

// Service runs the device grant.
type Service struct {
	store    Store
	login    *login.Service
	sessions *session.Manager
	cfg      Config
	now      func() time.Time
	log      *zap.Logger
	waiters  waiters
}

// New returns a Service. Approvals start their sessions through logins;
// sessions ends those whose approval lost a race and tells whether a
// session is still live when its device receives it. now is the clock of
// every expiry and interval decision.
func New(store Store, logins *login.Service, sessions *session.Manager, cfg Config, now func() time.Time, log *zap.Logger) *Service {
	cfg.defaults()
	return &Service{store: store, login: logins, sessions: sessions, cfg: cfg, now: now, log: log}
}

// Authorization is a new request, as the device receives it.
type Authorization struct {
	DeviceCode string
	UserCode   string // XXXX-XXXX
	ExpiresIn  time.Duration
	Interval   time.Duration
}

// Start opens a request for deviceID. Unknown devices get codes too, as a
// login does not say which devices exist; nobody can approve them.
func (s *Service) Start(ctx context.Context, deviceID string, client session.Client) (Authorization, error) {
	if err := identity.ValidateName("deviceId", deviceID); err != nil {
		return Authorization{}, err
	}
	deviceCode := newDeviceCode()
	pub, err := publicKeyFor(deviceCode)
	if err != nil {
		return Authorization{}, err
	}
	now := s.now()
	c := auth.DeviceCode{
		ID: newID(), CodeHash: hashCode(deviceCode), DeviceID: deviceID, PublicKey: pub,
		ClientAddr: truncate(client.Addr, 256), UserAgent: truncate(client.UserAgent, 256),
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.CodeTTL), Interval: s.cfg.Interval, Status: auth.DeviceCodePending,
	}
	// A user code meets a live one about once in 2.6·10¹⁰ / (live codes)
	// tries: a few tries make a failure practically impossible.
	for try := 0; ; try++ {
		c.UserCode = newUserCode()
		err = s.store.CreateDeviceCode(ctx, c)
		if !errors.Is(err, auth.ErrConflict) || try == 4 {
			break
		}
	}
	if err != nil {
		return Authorization{}, fmt.Errorf("create device code: %w", err)
	}
	s.log.Info("device code issued", zap.String("device_id", deviceID), zap.String("request_id", c.ID),
		zap.Time("expires_at", c.ExpiresAt), zap.String("client_addr", c.ClientAddr))
	return Authorization{DeviceCode: deviceCode, UserCode: FormatUserCode(c.UserCode), ExpiresIn: s.cfg.CodeTTL, Interval: s.cfg.Interval}, nil
}

// Pending is a live request, as the approval page shows it.
type Pending struct {
	DeviceID  string
	UserCode  string // XXXX-XXXX
	ExpiresAt time.Time
}

// Lookup finds the pending request of a user code, for the approval page
// to say which device asks. Like every use of a user code it is counted
// against clientAddr when the code is unknown.
func (s *Service) Lookup(ctx context.Context, userCode, clientAddr string) (Pending, error) {
	c, err := s.find(ctx, userCode, clientAddr)
	if err != nil {
		return Pending{}, err
	}
	return Pending{DeviceID: c.DeviceID, UserCode: FormatUserCode(c.UserCode), ExpiresAt: c.ExpiresAt}, nil
}

// Approval is a person's approval of a request: the user code the device
// shows and the credentials of a user of that device.
type Approval struct {
	UserCode, Username, Password string
	ClientAddr                   string // the approver's, for the guess limit
}

// Approved says whose session an approval started.
type Approved struct {
	DeviceID, Username, SessionID string
}

// Approve logs the user in on the request's device — through the login use
// case, so that a wrong PIN counts towards the account's lockout and a user
// of another device is refused like a wrong PIN — and hands the session to
// the device's next poll. ctx carries the approver's actor.
func (s *Service) Approve(ctx context.Context, a Approval) (Approved, error) {
	c, err := s.find(ctx, a.UserCode, a.ClientAddr)
	if err != nil {
		return Approved{}, err
	}
	issued, err := s.login.Login(ctx, login.Request{
		DeviceID: c.DeviceID, Username: a.Username, Password: a.Password,
		Client: session.Client{Addr: c.ClientAddr, UserAgent: c.UserAgent},
	})
	if err != nil {
		return Approved{}, err
	}
	sess := issued.Session
	plain, err := json.Marshal(sealedToken{Token: issued.Token, ExpiresAt: sess.ExpiresAt, SessionID: sess.ID,
		UserID: sess.UserID, Username: sess.Username, DeviceID: sess.DeviceID, IsAdmin: sess.IsAdmin})
	if err != nil {
		return Approved{}, s.abandon(ctx, sess, fmt.Errorf("encode token: %w", err))
	}
	sealed, err := seal(c.PublicKey, c.ID, plain)
	if err != nil {
		return Approved{}, s.abandon(ctx, sess, err)
	}
	now := s.now()
	rec := auth.Recording(ctx, auth.Event{Time: now, Type: auth.EventDeviceApproved, DeviceID: c.DeviceID,
		Username: sess.Username, SessionID: sess.ID, By: sess.Username, ClientAddr: a.ClientAddr})
	err = s.store.DecideDeviceCode(rec, c.ID, auth.DeviceDecision{Status: auth.DeviceCodeApproved, At: now,
		SessionID: sess.ID, SealedToken: sealed})
	if errors.Is(err, auth.ErrNotFound) {
		err = ErrAlreadyDecided // denied, approved by another, or expired meanwhile
	}
	if err != nil {
		return Approved{}, s.abandon(ctx, sess, fmt.Errorf("approve device code: %w", err))
	}
	s.waiters.wake(c.ID)
	s.log.Info("device approved", zap.String("device_id", c.DeviceID), zap.String("request_id", c.ID),
		zap.String("username", sess.Username), zap.String("session_id", sess.ID))
	return Approved{DeviceID: c.DeviceID, Username: sess.Username, SessionID: sess.ID}, nil
}

// abandon ends the session of an approval that could not be handed over,
// so that no session lives that nobody holds a token of, and returns err.
func (s *Service) abandon(ctx context.Context, sess auth.Session, err error) error {
	if rerr := s.sessions.Revoke(context.WithoutCancel(ctx), sess.ID, "", "system",
		"device approval not handed over"); rerr != nil && !errors.Is(rerr, auth.ErrNotFound) {
		s.log.Error("could not end the session of an abandoned approval", zap.String("session_id", sess.ID), zap.Error(rerr))
	}
	return err
}

// Deny refuses a request: the device's poll gets access_denied. Whoever
// reads the code on the headset may deny it; nobody signs in by it.
func (s *Service) Deny(ctx context.Context, userCode, clientAddr string) error {
	c, err := s.find(ctx, userCode, clientAddr)
	if err != nil {
		return err
	}
	now := s.now()
	rec := auth.Recording(ctx, auth.Event{Time: now, Type: auth.EventDeviceDenied, DeviceID: c.DeviceID,
		By: "anonymous", Reason: "denied with the user code", ClientAddr: clientAddr})
	err = s.store.DecideDeviceCode(rec, c.ID, auth.DeviceDecision{Status: auth.DeviceCodeDenied, At: now})
	if errors.Is(err, auth.ErrNotFound) {
		return ErrAlreadyDecided
	}
	if err != nil {
		return fmt.Errorf("deny device code: %w", err)
	}
	s.waiters.wake(c.ID)
	s.log.Info("device denied", zap.String("device_id", c.DeviceID), zap.String("request_id", c.ID))
	return nil
}

// find returns the pending, live request of a user code. A code that is
// not one is auth.ErrInvalidInput (not counted: it cannot be a guess); an
// unknown or expired one is ErrUnknownUserCode and counts against
// clientAddr; past the limit nothing is looked up (*GuessLimitError).
func (s *Service) find(ctx context.Context, userCode, clientAddr string) (auth.DeviceCode, error) {
	code, ok := normalizeUserCode(userCode)
	if !ok {
		return auth.DeviceCode{}, auth.InvalidInputf("user_code must be the 8 letters the device shows, like BCDF-GHJK")
	}
	now := s.now()
	// Counting first, in one atomic statement, keeps parallel guesses (on
	// any replica) from all being looked up before any is counted.
	ok, ends, err := s.store.ReserveDeviceGuess(ctx, clientAddr, now, s.cfg.GuessWindow, s.cfg.MaxGuesses)
	if err != nil {
		return auth.DeviceCode{}, fmt.Errorf("count user code guess: %w", err)
	}
	if !ok {
		// Debug: a client hammering past the limit must not turn each of
		// its requests into a log line; the guesses that reached the limit
		// were logged one by one.
		s.log.Debug("user code guesses refused", zap.String("client_addr", clientAddr), zap.Time("until", ends))
		return auth.DeviceCode{}, &GuessLimitError{RetryAfter: ends.Sub(now)}
	}
	c, err := s.store.DeviceCodeByUserCode(ctx, code)
	switch {
	case errors.Is(err, auth.ErrNotFound):
		s.log.Info("unknown user code", zap.String("client_addr", clientAddr))
		return auth.DeviceCode{}, ErrUnknownUserCode
	case err != nil:
		s.release(ctx, clientAddr)
		return auth.DeviceCode{}, fmt.Errorf("find user code: %w", err)
	}
	if c.Status == auth.DeviceCodePending && !now.Before(c.ExpiresAt) {
		// An expired code was right once; it still counts, as it can
		// never be used again.
		return auth.DeviceCode{}, ErrUnknownUserCode
	}
	s.release(ctx, clientAddr)
	if c.Status != auth.DeviceCodePending {
		return auth.DeviceCode{}, ErrAlreadyDecided
	}
	return c, nil
}

// release takes back a reserved guess; a failure only costs the client one
// guess of its window.
func (s *Service) release(ctx context.Context, clientAddr string) {
	if err := s.store.ReleaseDeviceGuess(context.WithoutCancel(ctx), clientAddr); err != nil {
		s.log.Warn("could not release a user code guess", zap.String("client_addr", clientAddr), zap.Error(err))
	}
}

// sealedToken is what waits, sealed, for the device: the login's answer.
type sealedToken struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
	SessionID string    `json:"sessionId"`
	UserID    string    `json:"userId"`
	Username  string    `json:"username"`
	DeviceID  string    `json:"deviceId"`
	IsAdmin   bool      `json:"isAdmin"`
}

// Poll answers a device's token request: the session once the request is
// approved, else one of the token endpoint's errors. A pending request's
// poll is held open for up to the interval (at most MaxHold) and answered
// as soon as the request is decided. clientID, when the device sends one,
// must be the device the code was issued to.
func (s *Service) Poll(ctx context.Context, deviceCode, clientID string) (session.Issued, error) {
	if deviceCode == "" {
		return session.Issued{}, auth.InvalidInputf("device_code is required")
	}
	if len(deviceCode) > maxDeviceCodeLen {
		return session.Issued{}, ErrInvalidGrant
	}
	hash := hashCode(deviceCode)
	c, err := s.byHash(ctx, hash)
	if err != nil {
		return session.Issued{}, err
	}
	if clientID != "" && clientID != c.DeviceID {
		return session.Issued{}, ErrInvalidGrant
	}
	if issued, err, done := s.settled(ctx, c, deviceCode); done {
		return issued, err
	}

	// Listen before the poll is recorded (and the state read with it), so
	// that a decision made from then on wakes this poll.
	woken, stop := s.waiters.add(c.ID)
	defer stop()
	now := s.now()
	tooSoon := !c.LastPolledAt.IsZero() && now.Before(c.LastPolledAt.Add(c.Interval))
	interval := c.Interval
	if tooSoon {
		interval += slowDownStep
	}
	c, err = s.store.PollDeviceCode(ctx, c.ID, c.LastPolledAt, now, interval)
	if errors.Is(err, auth.ErrNotFound) || tooSoon {
		// Another poll of the same code got in between: two at once is
		// polling too fast as well.
		return session.Issued{}, ErrSlowDown
	}
	if err != nil {
		return session.Issued{}, fmt.Errorf("record poll: %w", err)
	}
	if issued, err, done := s.settled(ctx, c, deviceCode); done {
		return issued, err
	}

	hold := time.NewTimer(min(c.Interval, s.cfg.MaxHold))
	defer hold.Stop()
	select {
	case <-woken:
	case <-hold.C:
	case <-ctx.Done():
		return session.Issued{}, ctx.Err()
	}
	if c, err = s.byHash(ctx, hash); err != nil {
		return session.Issued{}, err
	}
	if issued, err, done := s.settled(ctx, c, deviceCode); done {
		return issued, err
	}
	return session.Issued{}, ErrAuthorizationPending
}

func (s *Service) byHash(ctx context.Context, hash string) (auth.DeviceCode, error) {
	c, err := s.store.DeviceCodeByHash(ctx, hash)
	if errors.Is(err, auth.ErrNotFound) {
		return auth.DeviceCode{}, ErrInvalidGrant
	}
	if err != nil {
		return auth.DeviceCode{}, fmt.Errorf("find device code: %w", err)
	}
	return c, nil
}

// settled answers a request that no longer waits: done is false while it
// is pending and live. An approval is redeemed even after the request's
// expiry: it was given in time, and its session exists.
func (s *Service) settled(ctx context.Context, c auth.DeviceCode, deviceCode string) (issued session.Issued, err error, done bool) {
	switch {
	case c.Status == auth.DeviceCodeRedeemed:
		return session.Issued{}, ErrInvalidGrant, true
	case c.Status == auth.DeviceCodeDenied:
		return session.Issued{}, ErrAccessDenied, true
	case c.Status == auth.DeviceCodeApproved:
		issued, err := s.redeem(ctx, c, deviceCode)
		return issued, err, true
	case !s.now().Before(c.ExpiresAt):
		return session.Issued{}, ErrExpiredToken, true
	}
	return session.Issued{}, nil, false
}

// redeem hands an approved request's session to its device, once.
func (s *Service) redeem(ctx context.Context, c auth.DeviceCode, deviceCode string) (session.Issued, error) {
	sealed, err := s.store.RedeemDeviceCode(ctx, c.ID, s.now())
	if errors.Is(err, auth.ErrNotFound) {
		return session.Issued{}, ErrInvalidGrant // another poll redeemed it
	}
	if err != nil {
		return session.Issued{}, fmt.Errorf("redeem device code: %w", err)
	}
	plain, err := open(deviceCode, c.ID, sealed)
	if err != nil {
		return session.Issued{}, err
	}
	var t sealedToken
	if err := json.Unmarshal(plain, &t); err != nil {
		return session.Issued{}, fmt.Errorf("decode sealed token: %w", err)
	}
	// An admin, another login on a shared headset or a password change
	// may have ended the session since the approval.
	live, err := s.sessions.Live(ctx, t.SessionID)
	if err != nil {
		return session.Issued{}, err
	}
	if !live {
		s.log.Info("device code redeemed for a session that has ended", zap.String("device_id", c.DeviceID),
			zap.String("request_id", c.ID), zap.String("session_id", t.SessionID))
		return session.Issued{}, ErrInvalidGrant
	}
	s.log.Info("device signed in", zap.String("device_id", c.DeviceID), zap.String("request_id", c.ID),
		zap.String("session_id", t.SessionID))
	return session.Issued{Token: t.Token, Session: auth.Session{
		ID: t.SessionID, DeviceID: t.DeviceID, UserID: t.UserID, Username: t.Username, IsAdmin: t.IsAdmin, ExpiresAt: t.ExpiresAt,
	}}, nil
}

// Wake wakes the polls of request id waiting here: the store told of a
// decision, perhaps made on another replica.
func (s *Service) Wake(id string) { s.waiters.wake(id) }

// CleanupBatch is how many rows one cleanup statement deletes.
const CleanupBatch = 5000

// Cleanup deletes requests expired more than ExpiredKeep ago and guess
// windows that have ended, and returns how many rows it deleted.
func (s *Service) Cleanup(ctx context.Context) (int64, error) {
	now := s.now()
	codes, err := cleanup.InBatches(CleanupBatch, func(limit int) (int64, error) {
		return s.store.DeleteDeviceCodesExpiredBefore(ctx, now.Add(-ExpiredKeep), limit)
	})
	if err != nil {
		return codes, fmt.Errorf("delete expired device codes: %w", err)
	}
	guesses, err := cleanup.InBatches(CleanupBatch, func(limit int) (int64, error) {
		return s.store.DeleteDeviceGuessesBefore(ctx, now.Add(-s.cfg.GuessWindow), limit)
	})
	if err != nil {
		return codes + guesses, fmt.Errorf("delete ended user code guess windows: %w", err)
	}
	return codes + guesses, nil
}

// truncate cuts s to at most n bytes of valid UTF-8 without NUL, as the
// session does with what a client sends: the store refuses both.
func truncate(s string, n int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, ""), "\x00", "")
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}
