package devicegrant

import (
	"errors"
	"fmt"
	"time"
)

// The answers of the token endpoint that are not a token, named as RFC
// 8628 §3.5 (and RFC 6749 §5.2) name them; the gateway writes each with
// that name.
var (
	// ErrAuthorizationPending: nobody has approved or denied the request yet.
	ErrAuthorizationPending = errors.New("authorization_pending")
	// ErrSlowDown: polled sooner than the interval; the interval of the
	// request grew by 5 seconds.
	ErrSlowDown = errors.New("slow_down")
	// ErrAccessDenied: the request was denied.
	ErrAccessDenied = errors.New("access_denied")
	// ErrExpiredToken: the request expired before anyone approved it.
	ErrExpiredToken = errors.New("expired_token")
	// ErrInvalidGrant: no such device code, one issued to another device,
	// one already redeemed, or one whose session ended before the device
	// received it.
	ErrInvalidGrant = errors.New("invalid_grant")
	// ErrUnsupportedGrantType: a form-encoded token request with another
	// grant_type.
	ErrUnsupportedGrantType = errors.New("unsupported_grant_type")
)

// IsTokenError reports whether err is one of the token endpoint's answers
// named by RFC 8628 and RFC 6749.
func IsTokenError(err error) bool {
	for _, e := range []error{ErrAuthorizationPending, ErrSlowDown, ErrAccessDenied, ErrExpiredToken, ErrInvalidGrant, ErrUnsupportedGrantType} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Errors of the approval side.
var (
	// ErrUnknownUserCode: no live request has this user code (never had,
	// or it expired). Counted against the client's address.
	ErrUnknownUserCode = errors.New("unknown user code")
	// ErrAlreadyDecided: the request was approved or denied already (or
	// expired while this decision was being made).
	ErrAlreadyDecided = errors.New("request already decided")
)

// GuessLimitError refuses a client address that sent too many unknown user
// codes lately, without looking the code up; RetryAfter says when it may
// try again.
type GuessLimitError struct {
	RetryAfter time.Duration
}

func (e *GuessLimitError) Error() string {
	return fmt.Sprintf("too many unknown user codes from this address; retry after %s", e.RetryAfter.Round(time.Second))
}
