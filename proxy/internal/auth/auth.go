// Package auth holds the proxy's domain types — devices, users, sessions — and
// the errors a caller can act on. It has no dependencies so that every other
// package (stores, session logic, the HTTP surface) can share one vocabulary,
// and the HTTP layer can map each error to a status in one place.
package auth

import (
	"errors"
	"fmt"
	"time"
)

// User is an account on a device. Usernames are unique per device only: the
// device is the tenant.
type User struct {
	ID        string
	DeviceID  string
	Username  string
	IsAdmin   bool
	CreatedAt time.Time

	// PasswordHash is the stored hash a login was checked against, kept
	// so that the login can confirm it is still current once its session
	// exists (see identity.Service.Confirm). Never sent anywhere.
	PasswordHash string
	// UpgradedHash, when set by a login, replaces PasswordHash (a legacy
	// format, or weaker parameters) in the transaction that starts the
	// login's session: the upgrade happens exactly when the login does.
	UpgradedHash string
}

// ImportedUser is an account brought from another system with the hash of
// its password as that system made it (see password.Check for the formats).
type ImportedUser struct {
	DeviceID     string
	Username     string
	PasswordHash string
	IsAdmin      bool
}

// ImportResult counts what an import did, or would do.
type ImportResult struct {
	Imported int // new users
	Updated  int // existing users replaced (update only)
	Skipped  int // existing users left as they were
}

// Session is one login. Its ID travels inside the signed token; the database
// never stores anything that could be replayed as a token.
type Session struct {
	ID       string
	DeviceID string
	UserID   string // empty for a session without a user
	Username string // joined from the user for display and forwarding
	IsAdmin  bool

	// Generation counts refreshes. A token carries the generation it was
	// issued for; the previous generation stays valid until PrevValidUntil
	// so that requests already in flight during a refresh still pass.
	Generation     int64
	PrevValidUntil time.Time

	CreatedAt   time.Time
	RefreshedAt time.Time
	ExpiresAt   time.Time
	RevokedAt   time.Time // zero while not revoked
	// LastSeenAt is when the session was last used as far as the store
	// knows (replicas record uses lazily: see session.Idle); its creation
	// until then.
	LastSeenAt time.Time

	ClientAddr string
	UserAgent  string
}

// AcceptsGeneration reports whether a token issued for generation gen is
// still current for this session at now.
func (s Session) AcceptsGeneration(gen int64, now time.Time) bool {
	if gen == s.Generation {
		return true
	}
	return gen == s.Generation-1 && now.Before(s.PrevValidUntil)
}

// Errors a caller can act on. Stores translate driver errors into these at
// their boundary; the HTTP layer maps them to statuses in one table.
var (
	// ErrNotFound: the thing asked for does not exist (or belongs to another
	// device, which callers must not be able to tell apart).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the thing to create exists already.
	ErrConflict = errors.New("already exists")
	// ErrInvalidInput: the request itself is malformed.
	ErrInvalidInput = errors.New("invalid input")
	// ErrInvalidCredentials: unknown device, unknown user or wrong password;
	// deliberately one error so that none of them can be told apart.
	ErrInvalidCredentials = errors.New("invalid credentials")
	// ErrInvalidToken: the token is missing its session, or the session is
	// expired, revoked, superseded or gone.
	ErrInvalidToken = errors.New("invalid token")
	// ErrForbidden: a valid session without the scope the call needs.
	ErrForbidden = errors.New("insufficient scope")
	// ErrUnavailable: the store cannot answer; callers must fail closed.
	ErrUnavailable = errors.New("store unavailable")
	// ErrBusy: too much work of one kind at once (password hashing); the
	// caller may retry shortly.
	ErrBusy = errors.New("busy")
)

// LockedOutError says that an account is locked after too many consecutive
// failed logins, and for how long.
type LockedOutError struct {
	RetryAfter time.Duration
}

func (e *LockedOutError) Error() string {
	return fmt.Sprintf("account locked for %s after repeated failed logins", e.RetryAfter.Round(time.Second))
}

// InvalidInputf returns an error that wraps ErrInvalidInput with a message
// meant for the person who sent the request.
func InvalidInputf(format string, args ...any) error {
	return &publicError{kind: ErrInvalidInput, msg: fmt.Sprintf(format, args...)}
}

// publicError carries a message that is safe to show to a client.
type publicError struct {
	kind error
	msg  string
}

func (e *publicError) Error() string { return e.msg }
func (e *publicError) Unwrap() error { return e.kind }

// PublicMessage returns the client-safe message of err, if it carries one.
func PublicMessage(err error) (string, bool) {
	var pe *publicError
	if errors.As(err, &pe) {
		return pe.msg, true
	}
	return "", false
}
