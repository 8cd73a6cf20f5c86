package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/devicegrant"
)

// Errors of the HTTP surface itself.
var (
	errMissingToken     = errors.New("missing bearer token")
	errMethodNotAllowed = errors.New("method not allowed")
	errRouteNotFound    = errors.New("no such route")
)

// errorBody is every JSON error the proxy writes.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	// Description repeats Message where OAuth clients look for it (the
	// device grant's token errors).
	Description string `json:"error_description,omitempty"`
}

// realm names the protection space in WWW-Authenticate (RFC 6750 §3).
const realm = "authsidecar"

// writeError writes err as the JSON error body, with the status,
// headers and code of errorStatus.
func (g *Gateway) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := g.errorStatus(w, r, err)
	body := errorBody{Error: code, Message: msg}
	if devicegrant.IsTokenError(err) {
		body.Description = msg // RFC 6749 §5.2 names it so
	}
	writeJSON(w, status, body)
}

// errorStatus maps err to a status, a code and a message a client may see,
// and sets the headers that go with them (WWW-Authenticate, Retry-After)
// on w; the cause goes to the log only. This is the one place where errors
// become statuses, for the JSON errors and for the approval page alike.
func (g *Gateway) errorStatus(w http.ResponseWriter, r *http.Request, err error) (status int, code, msg string) {
	status, code, msg = http.StatusInternalServerError, "internal", "internal error"
	var locked *auth.LockedOutError
	var guesses *devicegrant.GuessLimitError
	switch {
	case errors.Is(err, errMissingToken):
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
		status, code, msg = http.StatusUnauthorized, "unauthorized", "a bearer token is required"
	case errors.Is(err, auth.ErrInvalidToken):
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		status, code, msg = http.StatusUnauthorized, "invalid_token", "the token is invalid, expired or revoked; log in again"
	case errors.Is(err, auth.ErrInvalidCredentials):
		status, code, msg = http.StatusUnauthorized, "invalid_credentials", "device, username or password is wrong"
	case errors.As(err, &locked):
		secs := int(locked.RetryAfter.Seconds() + 0.999)
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		status, code, msg = http.StatusTooManyRequests, "locked_out", "too many failed logins; try again after "+strconv.Itoa(secs)+" seconds"
	case errors.Is(err, auth.ErrForbidden):
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope"`)
		status, code, msg = http.StatusForbidden, "insufficient_scope", "this needs an admin session"
	case errors.Is(err, auth.ErrInvalidInput):
		status, code, msg = http.StatusBadRequest, "invalid_request", "the request is malformed"
		if m, ok := auth.PublicMessage(err); ok {
			msg = m
		}
	case errors.Is(err, auth.ErrNotFound), errors.Is(err, errRouteNotFound):
		status, code, msg = http.StatusNotFound, "not_found", "not found"
	case errors.Is(err, errMethodNotAllowed):
		status, code, msg = http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on "+r.URL.Path
	case errors.Is(err, auth.ErrConflict):
		status, code, msg = http.StatusConflict, "conflict", "already exists"
	case errors.Is(err, auth.ErrBusy):
		w.Header().Set("Retry-After", "1")
		status, code, msg = http.StatusServiceUnavailable, "busy", "too many logins at once; retry in a second"
	case errors.Is(err, auth.ErrUnavailable):
		status, code, msg = http.StatusServiceUnavailable, "unavailable", "the session store cannot be reached; nothing was forwarded"
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads this answer.
		status, code, msg = 499, "canceled", "request canceled"
	case errors.Is(err, context.DeadlineExceeded):
		status, code, msg = http.StatusServiceUnavailable, "unavailable", "the session store did not answer in time"
	case errors.Is(err, devicegrant.ErrAuthorizationPending):
		status, code, msg = http.StatusBadRequest, "authorization_pending", "nobody has approved or denied the request yet; poll again after the interval"
	case errors.Is(err, devicegrant.ErrSlowDown):
		status, code, msg = http.StatusBadRequest, "slow_down", "polled sooner than the interval; wait 5 seconds longer between polls from now on"
	case errors.Is(err, devicegrant.ErrAccessDenied):
		status, code, msg = http.StatusBadRequest, "access_denied", "the request was denied"
	case errors.Is(err, devicegrant.ErrExpiredToken):
		status, code, msg = http.StatusBadRequest, "expired_token", "the code expired before anyone approved it; request a new one"
	case errors.Is(err, devicegrant.ErrInvalidGrant):
		status, code, msg = http.StatusBadRequest, "invalid_grant", "unknown device code, one issued to another device, or one already used"
	case errors.Is(err, devicegrant.ErrUnsupportedGrantType):
		status, code, msg = http.StatusBadRequest, "unsupported_grant_type", "grant_type must be "+deviceGrantType
	case errors.Is(err, devicegrant.ErrUnknownUserCode):
		status, code, msg = http.StatusNotFound, "unknown_code", "no request waits with this code: check the code the headset shows, or let it ask for a new one"
	case errors.Is(err, devicegrant.ErrAlreadyDecided):
		status, code, msg = http.StatusConflict, "already_decided", "this request was already approved or denied"
	case errors.As(err, &guesses):
		secs := retrySeconds(guesses.RetryAfter)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		status, code, msg = http.StatusTooManyRequests, "too_many_attempts", "too many unknown codes from this address; try again after "+strconv.Itoa(secs)+" seconds"
	}
	if status >= 500 {
		g.log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path),
			zap.Int("status", status), zap.Error(err))
	} else if ce := g.log.Check(zap.DebugLevel, "request refused"); ce != nil {
		ce.Write(zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Int("status", status), zap.Error(err))
	}
	setOutcome(w, code)
	return status, code, msg
}

// retrySeconds is d in whole seconds for Retry-After, rounded up, at least 1.
func retrySeconds(d time.Duration) int {
	return max(int(d.Seconds()+0.999), 1)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
