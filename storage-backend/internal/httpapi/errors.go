package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authsidecar/authsidecar/storage-backend/internal/record"
)

// Error is an error with the status and public message to answer it with.
// Err, the cause, is logged but never shown to the client.
type Error struct {
	Status  int
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

func invalidRequest(message string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: message}
}

// writeError is the one place where errors become HTTP responses: the
// client sees a safe code and message, the log sees the cause.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		apiErr   *Error
		invalid  *record.InvalidError
		tooLarge *http.MaxBytesError
	)
	switch {
	case errors.As(err, &apiErr):
	case errors.As(err, &tooLarge):
		apiErr = &Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
			Message: "body exceeds " + strconv.FormatInt(tooLarge.Limit, 10) + " bytes"}
	case errors.As(err, &invalid):
		apiErr = invalidRequest(invalid.Reason)
	case errors.Is(err, record.ErrNotFound):
		apiErr = &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no record with this key"}
	case errors.Is(err, record.ErrUnavailable):
		apiErr = &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the database cannot be reached; retry"}
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; there is no one to answer.
		a.Logger.Info("request canceled by client", requestFields(r, 499, err)...)
		return
	default:
		apiErr = &Error{Status: http.StatusInternalServerError, Code: "internal_error", Message: "internal error"}
	}

	// A client's mistake is routine; unavailability is worth a look; any
	// other 5xx is a fault of ours.
	level := zapcore.InfoLevel
	switch {
	case apiErr.Status == http.StatusServiceUnavailable:
		level = zapcore.WarnLevel
	case apiErr.Status >= 500:
		level = zapcore.ErrorLevel
	}
	if ce := a.Logger.Check(level, "request failed"); ce != nil {
		ce.Write(append(requestFields(r, apiErr.Status, err), zap.String("code", apiErr.Code))...)
	}
	writeJSON(w, apiErr.Status, map[string]string{"error": apiErr.Code, "message": apiErr.Message})
}

// requestFields describes a request for the log. Bodies are never logged:
// they hold the devices' data.
func requestFields(r *http.Request, status int, err error) []zap.Field {
	return []zap.Field{
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
		zap.String("device_id", r.Header.Get(DeviceHeader)),
		zap.String("session_id", r.Header.Get(SessionHeader)),
		zap.Int("status", status),
		zap.Error(err),
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// Records belong to one device; no cache between it and us may keep them.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
