// Package httpapi serves the storage API over HTTP. It trusts the identity
// headers the auth proxy sets (X-Auth-Device-Id) and is never meant to be
// reached without that proxy in front of it.
//
// Handlers return errors; one function, writeError, turns them into a status
// and a JSON body {"error": code, "message": text}, and logs them.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/storage-backend/internal/record"
)

// DeviceHeader carries the device of the caller, set by the proxy.
const DeviceHeader = "X-Auth-Device-Id"

// SessionHeader carries the caller's session, set by the proxy: logged
// with a failure, so that an operator finds the same request in the
// proxy's log.
const SessionHeader = "X-Auth-Session-Id"

// Defaults and limits.
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultListLimit    = 100
	MaxListLimit        = 1000
	// readyTimeout bounds one readiness check, so that a hung database
	// makes the probe fail rather than wait.
	readyTimeout = 2 * time.Second
)

// API is the HTTP surface of the storage backend. Set its fields, then use it
// as an http.Handler; do not change them after the first request.
type API struct {
	// Store keeps the records. Required.
	Store record.Store
	// Logger receives one line per failed request. If nil, nothing is logged.
	Logger *zap.Logger
	// MaxBodyBytes limits a request body. If <= 0, DefaultMaxBodyBytes is used.
	MaxBodyBytes int64
	// Ready reports whether the backend can serve: nil means yes. GET /readyz
	// calls it with a short deadline. If nil, the API is ready until Drain.
	Ready func(ctx context.Context) error

	draining atomic.Bool
	once     sync.Once
	mux      *http.ServeMux
}

// Drain makes /readyz answer 503 from now on, so that load balancers stop
// sending requests while the server finishes the ones it has.
func (a *API) Drain() { a.draining.Store(true) }

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.once.Do(a.routes)
	a.mux.ServeHTTP(w, r)
}

func (a *API) routes() {
	if a.Logger == nil {
		a.Logger = zap.NewNop()
	}
	if a.MaxBodyBytes <= 0 {
		a.MaxBodyBytes = DefaultMaxBodyBytes
	}
	mux := http.NewServeMux()
	// Probes need no identity: the orchestrator calls them, not the proxy.
	mux.Handle("GET /healthz", a.handle(a.healthz))
	mux.Handle("/healthz", a.handle(methodNotAllowed("GET, HEAD")))
	mux.Handle("GET /readyz", a.handle(a.readyz))
	mux.Handle("/readyz", a.handle(methodNotAllowed("GET, HEAD")))

	// A pattern without a method catches the methods the others do not
	// name, so that a wrong method gets our JSON 405 rather than the mux's
	// plain-text one. {key...} lets keys contain "/".
	mux.Handle("POST /api/storage", a.device(a.put))
	mux.Handle("GET /api/storage", a.device(a.list))
	mux.Handle("/api/storage", a.device(func(w http.ResponseWriter, r *http.Request, _ string) error {
		return methodNotAllowed("GET, HEAD, POST")(w, r)
	}))
	mux.Handle("GET /api/storage/{key...}", a.device(a.get))
	mux.Handle("DELETE /api/storage/{key...}", a.device(a.delete))
	mux.Handle("/api/storage/{key...}", a.device(func(w http.ResponseWriter, r *http.Request, _ string) error {
		return methodNotAllowed("GET, HEAD, DELETE")(w, r)
	}))
	mux.Handle("/", a.device(func(http.ResponseWriter, *http.Request, string) error {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such endpoint"}
	}))
	a.mux = mux
}

// handle adapts a handler that returns an error.
func (a *API) handle(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	})
}

// device is handle for requests that act for a device: without a device id
// from the proxy there is no one to act for. Unknown paths and wrong methods
// go through it too, so that a caller without identity learns nothing about
// the API's surface.
func (a *API) device(h func(w http.ResponseWriter, r *http.Request, deviceID string) error) http.Handler {
	return a.handle(func(w http.ResponseWriter, r *http.Request) error {
		id := r.Header.Get(DeviceHeader)
		if err := record.ValidateDeviceID(id); err != nil {
			return &Error{Status: http.StatusUnauthorized, Code: "unauthorized",
				Message: "missing or invalid " + DeviceHeader + " header; requests must come through the auth proxy", Err: err}
		}
		return h(w, r, id)
	})
}

func methodNotAllowed(allow string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Allow", allow)
		return &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
			Message: "method " + r.Method + " is not allowed here; allowed: " + allow}
	}
}

func (a *API) healthz(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) error {
	if a.draining.Load() {
		return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "shutting down"}
	}
	if a.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := a.Ready(ctx); err != nil {
			return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "not ready", Err: err}
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

// putRequest is the body of POST /api/storage. Data and Meta stay raw JSON:
// the backend stores them without interpreting them.
type putRequest struct {
	Key  string          `json:"key"`
	Data json.RawMessage `json:"data"`
	Meta json.RawMessage `json:"meta"`
}

// summary is a record without its contents, as POST and list return it.
type summary struct {
	Key       string    `json:"key"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func summarize(r record.Record) summary {
	return summary{Key: r.Key, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
}

func (a *API) put(w http.ResponseWriter, r *http.Request, deviceID string) error {
	var req putRequest
	if err := decodeJSON(http.MaxBytesReader(w, r.Body, a.MaxBodyBytes), &req); err != nil {
		return err
	}
	if len(req.Data) == 0 {
		return invalidRequest("data is required (any JSON value, null included)")
	}
	// An explicit "meta": null means "no meta", as clients that serialize
	// unset fields as null expect.
	if string(req.Meta) == "null" {
		req.Meta = nil
	}
	stored, created, err := a.Store.Put(r.Context(), record.Record{
		DeviceID: deviceID, Key: req.Key, Data: req.Data, Meta: req.Meta,
	})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, summarize(stored))
	return nil
}

func (a *API) get(w http.ResponseWriter, r *http.Request, deviceID string) error {
	key := r.PathValue("key")
	if err := record.ValidateKey(key); err != nil {
		return err
	}
	rec, err := a.Store.Get(r.Context(), deviceID, key)
	if err != nil {
		return err
	}
	meta := rec.Meta
	if len(meta) == 0 {
		meta = json.RawMessage("{}")
	}
	writeJSON(w, http.StatusOK, struct {
		Key       string          `json:"key"`
		Data      json.RawMessage `json:"data"`
		Meta      json.RawMessage `json:"meta"`
		CreatedAt time.Time       `json:"createdAt"`
		UpdatedAt time.Time       `json:"updatedAt"`
	}{rec.Key, rec.Data, meta, rec.CreatedAt.UTC(), rec.UpdatedAt.UTC()})
	return nil
}

func (a *API) list(w http.ResponseWriter, r *http.Request, deviceID string) error {
	q := r.URL.Query()
	limit := DefaultListLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxListLimit {
			return invalidRequest("limit must be a whole number from 1 to " + strconv.Itoa(MaxListLimit))
		}
		limit = n
	}
	prefix := q.Get("prefix")
	if err := record.ValidatePrefix(prefix); err != nil {
		return err
	}
	recs, err := a.Store.List(r.Context(), deviceID, prefix, limit)
	if err != nil {
		return err
	}
	items := make([]summary, 0, len(recs)) // [] rather than null when empty
	for _, rec := range recs {
		items = append(items, summarize(rec))
	}
	writeJSON(w, http.StatusOK, map[string][]summary{"items": items})
	return nil
}

func (a *API) delete(w http.ResponseWriter, r *http.Request, deviceID string) error {
	key := r.PathValue("key")
	if err := record.ValidateKey(key); err != nil {
		return err
	}
	if err := a.Store.Delete(r.Context(), deviceID, key); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// decodeJSON reads exactly one JSON object from body into v. Anything after
// it but white space is refused: a body that is not what the client meant
// to send should not half-succeed.
func decodeJSON(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return decodeError(err)
		}
		return invalidRequest("body must hold a single JSON object; found more after it")
	}
	return nil
}

func decodeError(err error) error {
	var tooLarge *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooLarge):
		return err // writeError knows it
	case errors.Is(err, io.EOF):
		return invalidRequest("body is empty; expected a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalidRequest("body is not valid JSON: it ends too early")
	case errors.As(err, &syntax):
		return invalidRequest("body is not valid JSON: " + syntax.Error())
	case errors.As(err, &typ) && typ.Field == "":
		return invalidRequest("body must be a JSON object, not " + typ.Value)
	case errors.As(err, &typ):
		return invalidRequest(typ.Field + " has the wrong JSON type: " + typ.Value)
	default:
		return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "could not read the body", Err: err}
	}
}
