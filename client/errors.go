package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Sentinels for errors.Is. An *APIError matches the one that fits its status,
// so callers branch on what to do (log in, wait, give up) rather than on
// numbers.
var (
	// ErrUnauthorized: a 401 that a fresh login did not cure (wrong password,
	// or a token refused even right after logging in).
	ErrUnauthorized = errors.New("authsidecar: unauthorized")
	// ErrForbidden: 403, the session lacks the scope (an admin-only call).
	ErrForbidden = errors.New("authsidecar: forbidden")
	// ErrLockedOut: 429, the account is locked after repeated wrong
	// passwords; APIError.RetryAfter says how long to wait.
	ErrLockedOut = errors.New("authsidecar: locked out")
	// ErrNotFound: 404.
	ErrNotFound = errors.New("authsidecar: not found")
	// ErrUnavailable: 502, 503 or 504, or no answer because the proxy
	// refused or reset the connection: the proxy, its database or its
	// upstream is (perhaps briefly) unreachable. The client never retries
	// these itself: only the caller knows whether waiting is worth it.
	ErrUnavailable = errors.New("authsidecar: unavailable")
)

// APIError is a non-2xx answer, with the JSON error body the proxy and the
// storage backend write ({"error": code, "message": text}).
type APIError struct {
	Status  int    // HTTP status
	Code    string // machine code from the body, e.g. "invalid_credentials"; may be empty
	Message string // text for a person; the status text when the body had none
	// RetryAfter is the Retry-After header (429, sometimes 503); zero when absent.
	RetryAfter time.Duration
	// Method and Path say which call failed, for logs.
	Method, Path string
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "authsidecar: %s %s: %d", e.Method, e.Path, e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Is maps the status to a sentinel, so errors.Is(err, ErrLockedOut) works
// through any wrapping.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrLockedOut:
		return e.Status == http.StatusTooManyRequests
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrUnavailable:
		return e.Status == http.StatusBadGateway || e.Status == http.StatusServiceUnavailable ||
			e.Status == http.StatusGatewayTimeout
	case ErrAccessDenied:
		return e.Status == http.StatusBadRequest && e.Code == "access_denied"
	case ErrExpiredToken:
		return e.Status == http.StatusBadRequest && e.Code == "expired_token"
	}
	return false
}

// RetryAfter returns how long err asks the caller to wait (Retry-After of a
// 429 or 503) and whether it said so at all.
func RetryAfter(err error) (time.Duration, bool) {
	var ae *APIError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		return ae.RetryAfter, true
	}
	return 0, false
}

// newAPIError reads what it can from a failed answer. A body that is not the
// JSON error shape (a load balancer's HTML page) still yields a usable error.
func newAPIError(method, path string, resp *http.Response, body []byte, now time.Time) *APIError {
	e := &APIError{Status: resp.StatusCode, Method: method, Path: path}
	var eb struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &eb) == nil {
		e.Code, e.Message = eb.Error, eb.Message
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	return e
}

// parseRetryAfter accepts both forms RFC 9110 allows: delay-seconds and an
// HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// unreachableError is a request that got no answer because the proxy could
// not be reached: it matches ErrUnavailable, as docs/headsets.md groups a
// refused connection with 502 and 503, and unwraps to the transport's
// *url.Error for callers that look closer.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string        { return e.err.Error() }
func (e *unreachableError) Unwrap() error        { return e.err }
func (e *unreachableError) Is(target error) bool { return target == ErrUnavailable }

// unreachable reports whether a transport error means the proxy is not
// there (restarting, or its address not served): the connection could not
// be made, or was refused or reset. The caller's own context ending is not
// the proxy's fault and does not count.
func unreachable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" && !op.Timeout()
}
