package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
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
}

// realm names the protection space in WWW-Authenticate (RFC 6750 §3).
const realm = "authsidecar"

// writeError maps err to a status and a body a client may see; the cause
// goes to the log only. This is the one place where errors become statuses.
func (g *Gateway) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := http.StatusInternalServerError, "internal", "internal error"
	var locked *auth.LockedOutError
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
	}
	if status >= 500 {
		g.log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path),
			zap.Int("status", status), zap.Error(err))
	} else if ce := g.log.Check(zap.DebugLevel, "request refused"); ce != nil {
		ce.Write(zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Int("status", status), zap.Error(err))
	}
	setOutcome(w, code)
	writeJSON(w, status, errorBody{Error: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
