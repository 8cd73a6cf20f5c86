// Package gateway is the proxy's HTTP surface: login and the session API,
// the admin API, health, the public keys, and — for every other path — the
// check of the bearer token and its session before the request is forwarded
// to the upstream with the caller's identity in headers.
//
// Only the routes registered here are served without a token. Everything
// else is forwarded only after the session is known to be live: on any doubt
// (a store that cannot answer, a malformed header) the request is refused.
package gateway

import (
	"context"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/proxy/internal/audit"
	"github.com/authsidecar/authsidecar/proxy/internal/devicegrant"
	"github.com/authsidecar/authsidecar/proxy/internal/login"
	"github.com/authsidecar/authsidecar/proxy/internal/metrics"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
	"github.com/authsidecar/authsidecar/proxy/internal/tracing"
)

// Config wires a Gateway.
type Config struct {
	Upstream *url.URL         // where authenticated requests go
	Sessions *session.Manager // checks, refreshes and ends sessions
	Login    *login.Service   // starts them
	JWKS     []byte           // the public keys, served at /.well-known/jwks.json
	// Ready reports whether the proxy can serve (the store answers, the
	// schema is current). If nil, the proxy is always ready.
	Ready func(ctx context.Context) error
	// Transport forwards to the upstream. If nil, a transport tuned for one
	// upstream is used (see NewTransport).
	Transport http.RoundTripper
	// Rules say which forwarded paths are public or for admins only. If
	// nil, every forwarded path needs a live session.
	Rules *Rules
	// Audit, if not nil, serves GET /api/admin/events.
	Audit *audit.Service
	// Device, if not nil, serves the device grant (RFC 8628) and its
	// approval page; without it their routes answer 404.
	Device *devicegrant.Service
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// (see clientAddr); none by default.
	TrustedProxies []netip.Prefix
	// Metrics, if not nil, counts logins and times the upstream.
	Metrics *metrics.Metrics
	// Tracing, if not nil, records a client span for each forwarded
	// request and sends its trace context to the upstream. If nil, a
	// caller's traceparent reaches the upstream as it was sent.
	Tracing trace.TracerProvider
	Log     *zap.Logger
}

// Gateway serves the proxy's HTTP API.
type Gateway struct {
	cfg      Config
	log      *zap.Logger
	mux      *http.ServeMux
	proxy    *httputil.ReverseProxy // forwards authenticated requests
	tunnels  tunnels                // open upgraded connections, by session
	draining atomic.Bool
}

// New returns a Gateway.
func New(cfg Config) *Gateway {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	g := &Gateway{cfg: cfg, log: cfg.Log, mux: http.NewServeMux()}
	if cfg.Transport == nil {
		cfg.Transport = NewTransport()
	}
	g.proxy = g.forwarder(cfg.Upstream, tracing.Transport(cfg.Metrics.Transport(cfg.Transport), cfg.Tracing))
	g.tunnels = tunnels{log: g.log.Named("tunnels"), live: cfg.Sessions.Live, now: cfg.Sessions.Now}

	g.register(g.mux.Handle)
	return g
}

// register registers every route of the proxy with handle: the one list of
// them (ownPatterns reads it too, to keep route rules off them).
func (g *Gateway) register(handle func(pattern string, h http.Handler)) {
	r := registrar{g, handle}
	r.route("/healthz", http.MethodGet, g.healthz)
	r.route("/readyz", http.MethodGet, g.readyz)
	r.route("/.well-known/jwks.json", http.MethodGet, g.jwks)
	r.route("/api/auth/login", http.MethodPost, g.login)
	r.route("/api/auth/refresh", http.MethodPost, g.refresh)
	r.route("/api/auth/logout", http.MethodPost, g.withCaller(g.logout))
	r.route("/api/auth/session", http.MethodGet, g.withCaller(g.session))
	r.anyMethod("/api/auth/verify", g.verify) // the ingress asks with the client's method
	r.route("/api/auth/device/code", http.MethodPost, g.deviceCode)
	r.route("/api/auth/device/token", http.MethodPost, g.deviceToken)
	r.route("/api/auth/device/approve", http.MethodPost, g.deviceApprove)
	r.route("/api/auth/device/deny", http.MethodPost, g.deviceDeny)
	r.route("/device", http.MethodGet, g.devicePageHTML)
	r.route("/api/admin/sessions", http.MethodGet, g.withAdmin(g.adminList))
	r.route("/api/admin/sessions/revoke", http.MethodPost, g.withAdmin(g.adminRevoke))
	r.route("/api/admin/sessions/{id}", http.MethodDelete, g.withAdmin(g.adminDelete))
	r.route("/api/admin/events", http.MethodGet, g.withAdmin(g.adminEvents))
	// The proxy owns these prefixes: an unknown path under them is a 404
	// here, never something forwarded.
	r.subtree("/api/auth/", notFound)
	r.subtree("/api/admin/", notFound)
	// Without these, the router would redirect /api/auth to /api/auth/
	// with an HTML body; every error of the proxy is JSON.
	r.subtree("/api/auth", notFound)
	r.subtree("/api/admin", notFound)
	r.subtree("/", g.authenticated)
}

// registrar registers routes of the gateway with handle.
type registrar struct {
	g      *Gateway
	handle func(pattern string, h http.Handler)
}

// route serves h at path for one method; any other method is 405 here
// rather than falling through to the forwarding catch-all.
func (r registrar) route(path, method string, h handlerFunc) {
	r.handle(path, r.g.handle(func(w http.ResponseWriter, req *http.Request) error {
		if req.Method != method && !(method == http.MethodGet && req.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			return errMethodNotAllowed
		}
		return h(w, req)
	}))
}

// anyMethod serves h at path whatever the method.
func (r registrar) anyMethod(path string, h handlerFunc) { r.handle(path, r.g.handle(h)) }

// subtree serves h for every path under prefix that no route above takes.
func (r registrar) subtree(prefix string, h handlerFunc) { r.handle(prefix, r.g.handle(h)) }

// ServeHTTP serves a request: one whose path another component could read
// differently is refused before anything else (see checkPath).
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.cfg.Metrics != nil {
		g.serveCounted(w, r)
		return
	}
	g.serve(w, r)
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request) {
	if err := g.checkPath(r); err != nil {
		g.writeError(w, r, err)
		return
	}
	g.mux.ServeHTTP(w, r)
}

// Drain makes /readyz answer 503 from now on, so that load balancers stop
// sending new requests while in-flight ones finish.
func (g *Gateway) Drain() { g.draining.Store(true) }

// handlerFunc is a handler that returns its error for writeError to map.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (g *Gateway) handle(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			g.writeError(w, r, err)
		}
	})
}

func notFound(http.ResponseWriter, *http.Request) error { return errRouteNotFound }

func (g *Gateway) healthz(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (g *Gateway) readyz(w http.ResponseWriter, r *http.Request) error {
	if g.draining.Load() {
		setOutcome(w, "draining")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "draining", Message: "the proxy is shutting down"})
		return nil
	}
	if g.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := g.cfg.Ready(ctx); err != nil {
			// The cause goes to the log only: a driver's error names the
			// database host, user and database, and /readyz is public.
			g.log.Warn("not ready", zap.Error(err))
			setOutcome(w, "not_ready")
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "not_ready",
				Message: "the database does not answer or its schema is not current; see the proxy's log"})
			return nil
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

func (g *Gateway) jwks(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(g.cfg.JWKS)
	return nil
}
