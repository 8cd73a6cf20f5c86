// Package identity manages the accounts that log in — devices and their users
// — and decides whether a login's credentials are right.
package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/cleanup"
	"github.com/authsidecar/authsidecar/proxy/internal/password"
)

// Store is where accounts live.
type Store interface {
	AddUser(ctx context.Context, deviceID, username, passwordHash string, isAdmin bool) (auth.User, error)
	UserCredentials(ctx context.Context, deviceID, username string) (auth.User, string, error)
	SetPassword(ctx context.Context, deviceID, username, passwordHash string, now time.Time) (auth.User, int64, error)
	RemoveUser(ctx context.Context, deviceID, username string) (auth.User, int64, error)
	// RecordEvent writes an audit event that records no change of the
	// store's own (a wrong PIN).
	RecordEvent(ctx context.Context, ev auth.Event) error
	ListUsers(ctx context.Context, deviceID string) ([]auth.User, error)
	// ImportUsers adds users (and their devices) in one transaction. An
	// existing user is skipped, or with update replaced and its sessions
	// revoked at now. Without commit the transaction is rolled back: the
	// result says what the import would do.
	ImportUsers(ctx context.Context, users []auth.ImportedUser, update, commit bool, now time.Time) (auth.ImportResult, error)

	ReserveLoginAttempt(ctx context.Context, deviceID, username string, now time.Time) (attempt int, lockedUntil time.Time, err error)
	ReleaseLoginAttempt(ctx context.Context, deviceID, username string) error
	LockAccount(ctx context.Context, deviceID, username string, now time.Time, base, maxLock time.Duration) (time.Time, error)
	ResetLoginFailures(ctx context.Context, deviceID, username string) (bool, error)
	DeleteStaleLoginFailures(ctx context.Context, before, now time.Time, limit int) (int64, error)
}

// FailureMemory is how long failure counts of an account that is not
// locked are kept after its last attempt.
const FailureMemory = 24 * time.Hour

// Lockout is the policy against guessing: after MaxFailures consecutive
// failed logins an account is locked for Duration, doubled by each further
// lockout up to MaxDuration. A 4-digit PIN has only 10,000 values; at five
// guesses per lockout, doubling to the hour, an attacker gets five guesses
// an hour once the cap is reached: about six weeks on average for one
// account, during which the lockouts show in the logs and the metrics.
type Lockout struct {
	MaxFailures int
	Duration    time.Duration
	MaxDuration time.Duration // default 1h
	// OnLock, if not nil, is called each time an account gets locked.
	OnLock func()
}

// Service authenticates logins and administers accounts.
type Service struct {
	store   Store
	hasher  *password.Hasher
	lockout Lockout
	now     func() time.Time
	log     *zap.Logger
}

// New returns a Service. now is the clock; log receives one line per login
// decision (never a password).
func New(store Store, hasher *password.Hasher, lockout Lockout, now func() time.Time, log *zap.Logger) *Service {
	if lockout.MaxDuration <= 0 {
		lockout.MaxDuration = time.Hour
	}
	if lockout.MaxFailures <= 0 {
		lockout.MaxFailures = 5
	}
	if lockout.Duration <= 0 {
		lockout.Duration = time.Minute
	}
	return &Service{store: store, hasher: hasher, lockout: lockout, now: now, log: log}
}

// MaxNameLen bounds device ids and usernames.
const MaxNameLen = 128

// ValidateName checks a device id or username: non-empty, at most
// MaxNameLen bytes, valid UTF-8 without control characters (they would
// forge log lines and headers).
func ValidateName(field, v string) error {
	switch {
	case v == "":
		return auth.InvalidInputf("%s is required", field)
	case len(v) > MaxNameLen:
		return auth.InvalidInputf("%s is longer than %d bytes", field, MaxNameLen)
	case !utf8.ValidString(v):
		return auth.InvalidInputf("%s is not valid UTF-8", field)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return auth.InvalidInputf("%s contains a control character", field)
	}
	return nil
}

// Authenticate returns the user when the password is right. Unknown device,
// unknown user and wrong password all return auth.ErrInvalidCredentials after
// the same amount of hashing work, so that neither the answer nor its timing
// tells which accounts exist. A locked account — known or not — gets an
// *auth.LockedOutError, even with the right password.
func (s *Service) Authenticate(ctx context.Context, deviceID, username, pw string) (auth.User, error) {
	now := s.now()
	attempt, lockedUntil, err := s.store.ReserveLoginAttempt(ctx, deviceID, username, now)
	if err != nil {
		return auth.User{}, err
	}
	if attempt == 0 || attempt > s.lockout.MaxFailures {
		// Locked, or a parallel guess past the threshold while the lock is
		// being set: refused without checking the password.
		if attempt > 0 {
			// Past the threshold without a lock: a guess racing the one
			// that locks, or a run whose locking attempt was never
			// evaluated (hasher busy, store down). Lock here so that the
			// refusal has an end: otherwise the count only grows and the
			// account is refused forever. An account locked meanwhile keeps
			// its lock, and a success meanwhile has reset it.
			until, err := s.store.LockAccount(s.lockEvent(ctx, deviceID, username, now), deviceID, username, now, s.lockout.Duration, s.lockout.MaxDuration)
			if err != nil && !errors.Is(err, auth.ErrNotFound) {
				s.log.Warn("could not lock account", zap.String("device_id", deviceID), zap.String("username", username), zap.Error(err))
			}
			lockedUntil = until
		}
		retry := lockedUntil.Sub(now)
		if retry <= 0 {
			// Past the threshold with the lock not set yet: the attempt
			// that will set it (or a success that resets the count) is in
			// flight. Ask to retry soon rather than claim a full lockout.
			retry = time.Second
		}
		s.log.Info("login failed", zap.String("device_id", deviceID), zap.String("username", username), clientAddr(ctx),
			zap.String("reason", "locked out"), zap.Duration("retry_after", retry))
		return auth.User{}, &auth.LockedOutError{RetryAfter: retry}
	}

	user, ok, err := s.check(ctx, deviceID, username, pw)
	if err != nil {
		// Not evaluated (hasher busy, caller gone or out of time, store
		// down): neither load nor an outage may count towards a lockout.
		if rerr := s.store.ReleaseLoginAttempt(context.WithoutCancel(ctx), deviceID, username); rerr != nil {
			s.log.Warn("could not release login attempt", zap.Error(rerr))
		}
		return auth.User{}, err
	}
	if !ok {
		reason := "wrong password"
		if user.ID == "" {
			reason = "unknown account"
		}
		fields := []zap.Field{zap.String("device_id", deviceID), zap.String("username", username), clientAddr(ctx),
			zap.String("reason", reason), zap.Int("consecutive_failures", attempt)}
		// A PIN that was checked and wrong is on the record; refusals before
		// any check (locked, busy) are only counted, so that a flood cannot
		// turn into a row per attempt.
		if err := s.store.RecordEvent(ctx, s.event(ctx, auth.EventLoginFailed, deviceID, username, now, reason)); err != nil {
			s.log.Warn("could not record a failed login", zap.Error(err))
		}
		if attempt >= s.lockout.MaxFailures {
			until, err := s.store.LockAccount(s.lockEvent(ctx, deviceID, username, now), deviceID, username, now, s.lockout.Duration, s.lockout.MaxDuration)
			switch {
			case errors.Is(err, auth.ErrNotFound):
				// A parallel login succeeded and reset the account: the run
				// of failures is over, there is nothing to lock.
				s.log.Info("login failed", fields...)
			case err != nil:
				return auth.User{}, err
			default:
				fields = append(fields, zap.Time("locked_until", until))
				s.log.Warn("account locked", fields...)
				if s.lockout.OnLock != nil {
					s.lockout.OnLock()
				}
			}
		} else {
			s.log.Info("login failed", fields...)
		}
		return auth.User{}, auth.ErrInvalidCredentials
	}
	if _, err := s.store.ResetLoginFailures(ctx, deviceID, username); err != nil {
		return auth.User{}, err
	}
	return s.upgrade(ctx, user, pw), nil
}

// upgrade sets user.UpgradedHash when its stored hash is an imported
// legacy one (or has weaker parameters than the hasher's): pw, just found
// right, hashed anew, for the session's transaction to store. A hash that
// cannot be made now (the hasher busy) leaves the upgrade to a later
// login rather than fail this one.
func (s *Service) upgrade(ctx context.Context, user auth.User, pw string) auth.User {
	if !s.hasher.NeedsUpgrade(user.PasswordHash) {
		return user
	}
	h, err := s.hasher.Hash(ctx, pw)
	if err != nil {
		s.log.Warn("password hash not upgraded this time", zap.String("device_id", user.DeviceID),
			zap.String("username", user.Username), zap.Error(err))
		return user
	}
	user.UpgradedHash = h
	return user
}

// check looks the account up and verifies the password; user.ID is empty
// for an unknown account.
func (s *Service) check(ctx context.Context, deviceID, username, pw string) (auth.User, bool, error) {
	user, hash, err := s.store.UserCredentials(ctx, deviceID, username)
	if err != nil && !errors.Is(err, auth.ErrNotFound) {
		return auth.User{}, false, err
	}
	// hash is empty for an unknown account: Verify then checks a dummy hash.
	ok, err := s.hasher.Verify(ctx, pw, hash)
	if errors.Is(err, password.ErrMalformedHash) {
		s.log.Error("stored password hash is malformed", zap.String("device_id", deviceID), zap.String("username", username))
		return user, false, nil
	}
	if err != nil {
		return auth.User{}, false, err
	}
	user.PasswordHash = hash
	return user, ok, nil
}

// Confirm checks, after a login's session was created, that the account
// still exists with the password the login was checked against. A password
// change or a removal that committed while the login was hashing revoked
// only the sessions that existed then; the caller must end the new one
// when Confirm fails. Once the session exists, a later change finds and
// revokes it, so checking after the insert closes the window.
func (s *Service) Confirm(ctx context.Context, user auth.User) error {
	_, hash, err := s.store.UserCredentials(ctx, user.DeviceID, user.Username)
	current := hash == user.PasswordHash || (user.UpgradedHash != "" && hash == user.UpgradedHash)
	if errors.Is(err, auth.ErrNotFound) || (err == nil && !current) {
		s.log.Info("login failed", zap.String("device_id", user.DeviceID), zap.String("username", user.Username),
			zap.String("reason", "password changed or user removed during the login"))
		return auth.ErrInvalidCredentials
	}
	return err
}

// clientAddr is the log field naming where the request came from.
func clientAddr(ctx context.Context) zap.Field {
	a, _ := auth.ActorFrom(ctx)
	return zap.String("client_addr", a.ClientAddr)
}

// event is an audit event of this service at now.
func (s *Service) event(ctx context.Context, t auth.EventType, deviceID, username string, now time.Time, reason string) auth.Event {
	ev := auth.Event{Time: now, Type: t, DeviceID: deviceID, Username: username, Reason: reason}
	if a, ok := auth.ActorFrom(ctx); ok {
		ev.By, ev.ClientAddr = a.By, a.ClientAddr
	}
	if ev.By == "" {
		ev.By = username // a login's events are the user's own
	}
	return ev
}

// recording returns ctx for the store call that makes an account change,
// carrying its audit event.
func (s *Service) recording(ctx context.Context, t auth.EventType, deviceID, username, reason string) context.Context {
	return auth.Recording(ctx, auth.Event{Time: s.now(), Type: t, DeviceID: deviceID, Username: username, Reason: reason})
}

// lockEvent returns ctx for the store call that locks an account.
func (s *Service) lockEvent(ctx context.Context, deviceID, username string, now time.Time) context.Context {
	return auth.Recording(ctx, s.event(ctx, auth.EventLockout, deviceID, username, now, "too many failed logins"))
}

// ForgetStaleFailures deletes failure counts untouched for FailureMemory
// (and not locked), in batches, and returns how many. Guesses at random
// usernames would otherwise pile up rows forever.
func (s *Service) ForgetStaleFailures(ctx context.Context) (int64, error) {
	now := s.now()
	return cleanup.InBatches(5000, func(limit int) (int64, error) {
		return s.store.DeleteStaleLoginFailures(ctx, now.Add(-FailureMemory), now, limit)
	})
}

// Unlock ends a login lockout and forgets the account's failures.
func (s *Service) Unlock(ctx context.Context, deviceID, username string) error {
	had, err := s.store.ResetLoginFailures(s.recording(ctx, auth.EventUnlock, deviceID, username, ""), deviceID, username)
	if err != nil {
		return err
	}
	s.log.Info("account unlocked", zap.String("device_id", deviceID), zap.String("username", username), zap.Bool("was_counted", had))
	return nil
}

// AddUser creates a user (and its device when it is new).
func (s *Service) AddUser(ctx context.Context, deviceID, username, pw string, isAdmin bool) (auth.User, error) {
	if err := ValidateCredentials(deviceID, username, pw); err != nil {
		return auth.User{}, err
	}
	hash, err := s.hasher.Hash(ctx, pw)
	if err != nil {
		return auth.User{}, err
	}
	reason := ""
	if isAdmin {
		reason = "admin"
	}
	u, err := s.store.AddUser(s.recording(ctx, auth.EventUserAdded, deviceID, username, reason), deviceID, username, hash, isAdmin)
	if err != nil {
		return auth.User{}, fmt.Errorf("user %s on device %s: %w", username, deviceID, err)
	}
	s.log.Info("user added", zap.String("device_id", deviceID), zap.String("username", username), zap.Bool("admin", isAdmin))
	return u, nil
}

// SetPassword changes a user's password and revokes its sessions; it
// returns how many sessions it revoked.
func (s *Service) SetPassword(ctx context.Context, deviceID, username, pw string) (int64, error) {
	if err := ValidateCredentials(deviceID, username, pw); err != nil {
		return 0, err
	}
	hash, err := s.hasher.Hash(ctx, pw)
	if err != nil {
		return 0, err
	}
	now := s.now()
	_, revoked, err := s.store.SetPassword(s.recording(ctx, auth.EventPasswordChanged, deviceID, username, ""), deviceID, username, hash, now)
	if err != nil {
		return 0, fmt.Errorf("user %s on device %s: %w", username, deviceID, err)
	}
	s.log.Info("password changed", zap.String("device_id", deviceID), zap.String("username", username), zap.Int64("sessions_revoked", revoked))
	return revoked, nil
}

// RemoveUser deletes a user and ends its sessions; it returns how many
// sessions it ended.
func (s *Service) RemoveUser(ctx context.Context, deviceID, username string) (int64, error) {
	_, n, err := s.store.RemoveUser(s.recording(ctx, auth.EventUserRemoved, deviceID, username, ""), deviceID, username)
	if err != nil {
		return 0, fmt.Errorf("user %s on device %s: %w", username, deviceID, err)
	}
	s.log.Info("user removed", zap.String("device_id", deviceID), zap.String("username", username), zap.Int64("sessions_revoked", n))
	return n, nil
}

// ListUsers lists users, of one device when deviceID is not empty.
func (s *Service) ListUsers(ctx context.Context, deviceID string) ([]auth.User, error) {
	return s.store.ListUsers(ctx, deviceID)
}

// MaxPasswordLen bounds a password: a PIN fits many times over, and a
// longer one would only make hashing cost more.
const MaxPasswordLen = 1024

// ValidateCredentials checks a device id, username and password as any
// caller sends them: the one place where their rules live.
func ValidateCredentials(deviceID, username, pw string) error {
	if err := ValidateName("deviceId", deviceID); err != nil {
		return err
	}
	if err := ValidateName("username", username); err != nil {
		return err
	}
	if pw == "" {
		return auth.InvalidInputf("password is required")
	}
	if len(pw) > MaxPasswordLen {
		return auth.InvalidInputf("password is longer than %d bytes", MaxPasswordLen)
	}
	return nil
}
