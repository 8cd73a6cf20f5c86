package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authsidecar/authsidecar/internal/testkit"
	"github.com/authsidecar/authsidecar/proxy/internal/devicegrant"
	"github.com/authsidecar/authsidecar/proxy/internal/gateway"
	"github.com/authsidecar/authsidecar/proxy/internal/identity"
	"github.com/authsidecar/authsidecar/proxy/internal/login"
	"github.com/authsidecar/authsidecar/proxy/internal/metrics"
	"github.com/authsidecar/authsidecar/proxy/internal/password"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
	"github.com/authsidecar/authsidecar/proxy/internal/token"
)

// upstream is a real backend that records what reached it.
type upstream struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	last *http.Request
	body string
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.last, u.body = r.Clone(context.Background()), string(b)
		u.mu.Unlock()
		w.Header().Set("X-Upstream", "yes")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) lastRequest() (*http.Request, string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last, u.body
}

// env is a gateway in front of an upstream, on a schema of its own.
type env struct {
	t        testing.TB
	metrics  *metrics.Metrics
	store    *postgres.Store
	cache    *session.Cache // nil unless the env was made with one
	pool     interface{ Close() }
	ids      *identity.Service
	sessions *session.Manager
	gw       *gateway.Gateway
	srv      *httptest.Server
	up       *upstream
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, envOptions{})
}

// envOptions change what newEnvWith builds; zero fields keep newEnv's.
type envOptions struct {
	Upstream *url.URL              // nil: a recording upstream of the env's own
	Session  func(*session.Config) // changes to the session configuration
	Gateway  func(*gateway.Config) // changes to the gateway configuration
	// Device, if not nil, serves the device grant with this policy.
	Device *devicegrant.Config
}

// newEnvWith is newEnv with options.
func newEnvWith(t testing.TB, o envOptions) *env {
	t.Helper()
	upURL := o.Upstream
	ctx := context.Background()
	pool := testkit.Pool(t)
	m, err := postgres.NewMigrator(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	store := postgres.NewStore(pool)
	key, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.New([]token.Key{key}, token.Options{Issuer: "test"})
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := password.New(password.Options{Params: password.Params{Memory: 64, Time: 1, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	e := &env{t: t, store: store, pool: pool}
	if upURL == nil {
		e.up = newUpstream(t)
		upURL, _ = url.Parse(e.up.URL)
	}
	e.ids = identity.New(store, hasher, identity.Lockout{MaxFailures: 5, Duration: time.Minute}, time.Now, log)
	// With metrics, as the proxy always serves: every test goes through
	// the request metrics' response writer too.
	cfg := session.Config{TTL: time.Hour, MaxAge: 2 * time.Hour, RefreshGrace: time.Second, Metrics: metrics.New()}
	if o.Session != nil {
		o.Session(&cfg)
	}
	e.cache, e.metrics = cfg.Cache, cfg.Metrics
	e.sessions = session.NewManager(store, signer, cfg, time.Now, log)
	gcfg := gateway.Config{
		Upstream: upURL, Sessions: e.sessions, Login: login.New(e.ids, e.sessions, cfg.Metrics, log), JWKS: signer.JWKS(),
		Ready: func(ctx context.Context) error { return store.Ping(ctx) }, Log: log, Metrics: cfg.Metrics,
	}
	if o.Device != nil {
		gcfg.Device = devicegrant.New(store, gcfg.Login, e.sessions, *o.Device, time.Now, log)
	}
	if o.Gateway != nil {
		o.Gateway(&gcfg)
	}
	e.gw = gateway.New(gcfg)
	e.srv = httptest.NewServer(e.gw)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) addUser(device, username, pw string, admin bool) {
	e.t.Helper()
	if _, err := e.ids.AddUser(context.Background(), device, username, pw, admin); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) login(device, username, pw string) string {
	e.t.Helper()
	resp := e.send("POST", "/api/auth/login", "", `{"deviceId":"`+device+`","username":"`+username+`","password":"`+pw+`"}`, nil)
	if resp.StatusCode != 200 {
		e.t.Fatalf("login: %d %s", resp.StatusCode, readAll(resp))
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		e.t.Fatal(err)
	}
	return body.Token
}

// send makes one request with a raw path (sent as written, not cleaned by
// the client) and extra headers.
func (e *env) send(method, path, tok, body string, hdr http.Header) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.URL.Opaque = path // keeps "..", "%2e" and "//" exactly as written
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func readAll(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

func wantJSONError(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, readAll(resp))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var body struct{ Error, Message string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body.Error != code || body.Message == "" {
		t.Fatalf("body %+v, want code %q with a message", body, code)
	}
}

func TestForwardSetsIdentityHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addUser("VR-1", "1111", "1111", false)
	tok := e.login("VR-1", "1111", "1111")
	resp := e.send("POST", "/api/storage?x=1", tok, `{"key":"k"}`, nil)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("X-Upstream") != "yes" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	r, body := e.up.lastRequest()
	if r.Method != "POST" || r.URL.Path != "/api/storage" || r.URL.RawQuery != "x=1" || body != `{"key":"k"}` {
		t.Fatalf("upstream got %s %s ? %s body %q", r.Method, r.URL.Path, r.URL.RawQuery, body)
	}
	for h, want := range map[string]string{
		"X-Auth-Username": "1111", "X-Auth-Device-Id": "VR-1", "X-Auth-Admin": "false",
	} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if r.Header.Get("X-Auth-User-Id") == "" || r.Header.Get("X-Auth-Session-Id") == "" {
		t.Errorf("user or session id missing: %v", r.Header)
	}
	if r.Header.Get("Authorization") != "" {
		t.Errorf("the token reached the backend")
	}
}

// TestClientIdentityHeadersAreStripped: no spelling of an identity header
// that the client sends reaches the backend (caddy's forward_auth has the
// same regression test).
func TestClientIdentityHeadersAreStripped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addUser("VR-1", "1111", "1111", false)
	tok := e.login("VR-1", "1111", "1111")
	hdr := http.Header{
		"X-Auth-Admin":     {"true"},
		"x-auth-device-id": {"VR-OTHER"},
		"X_Auth_User_Id":   {"evil"},
		"X-AUTH-USERNAME":  {"root"},
		"X-Auth-Extra":     {"1"},
		"X-Forwarded-For":  {"10.9.9.9"},
		"Connection":       {"X-Auth-Device-Id, X-Auth-Admin"},
	}
	if resp := e.send("GET", "/anything", tok, "", hdr); resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r, _ := e.up.lastRequest()
	if got := r.Header.Values("X-Auth-Admin"); len(got) != 1 || got[0] != "false" {
		t.Errorf("X-Auth-Admin = %q", got)
	}
	if got := r.Header.Values("X-Auth-Device-Id"); len(got) != 1 || got[0] != "VR-1" {
		t.Errorf("X-Auth-Device-Id = %q", got)
	}
	for k := range r.Header {
		lk := strings.ToLower(strings.ReplaceAll(k, "_", "-"))
		if strings.HasPrefix(lk, "x-auth-") && !map[string]bool{
			"x-auth-user-id": true, "x-auth-username": true, "x-auth-device-id": true, "x-auth-admin": true, "x-auth-session-id": true,
		}[lk] {
			t.Errorf("client header %s reached the backend", k)
		}
		if k == "X_Auth_User_Id" {
			t.Errorf("underscore spelling reached the backend")
		}
	}
	if xff := r.Header.Get("X-Forwarded-For"); strings.Contains(xff, "10.9.9.9") {
		t.Errorf("X-Forwarded-For appended to the client's claim: %q", xff)
	}
}

func TestH2CUpgradeIsNotForwarded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addUser("VR-1", "1111", "1111", false)
	tok := e.login("VR-1", "1111", "1111")
	e.send("GET", "/x", tok, "", http.Header{"Upgrade": {"h2c"}, "Connection": {"Upgrade, HTTP2-Settings"}, "Http2-Settings": {"AAMAAABkAAQAAP__"}})
	r, _ := e.up.lastRequest()
	if r == nil {
		t.Fatal("request did not reach upstream at all")
	}
	if r.Header.Get("Upgrade") != "" || r.Header.Get("Http2-Settings") != "" {
		t.Fatalf("h2c upgrade forwarded: %v", r.Header)
	}
}

// TestNoPathReachesUpstreamWithoutToken: only the proxy's own routes are
// public; no spelling of a path sneaks past the token check.
func TestNoPathReachesUpstreamWithoutToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, p := range []string{
		"/api/storage", "/healthz/../api/storage", "/healthz/%2e%2e/api/storage", "/healthz%2f..%2fapi/storage",
		"//api/storage", "/api/auth/login/../../storage", "/healthz/", "/healthz.", "/.well-known/jwks.json/../../api/storage",
		"/api/auth/../storage", "/HEALTHZ", "/api/admin/../storage", "/readyz/%2e%2e/x",
	} {
		resp := e.send("GET", p, "", "", nil)
		if resp.StatusCode == http.StatusCreated {
			t.Errorf("%s reached the upstream without a token", p)
		}
	}
	if n := e.up.hits.Load(); n != 0 {
		t.Fatalf("upstream was hit %d times without a token", n)
	}
}

func TestOwnRoutesAreNotForwarded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addUser("VR-1", "1111", "1111", false)
	tok := e.login("VR-1", "1111", "1111")
	wantJSONError(t, e.send("GET", "/api/auth/login", tok, "", nil), http.StatusMethodNotAllowed, "method_not_allowed")
	wantJSONError(t, e.send("POST", "/api/auth/nosuch", tok, "", nil), http.StatusNotFound, "not_found")
	wantJSONError(t, e.send("GET", "/api/admin/nosuch", tok, "", nil), http.StatusNotFound, "not_found")
	if n := e.up.hits.Load(); n != 0 {
		t.Fatalf("upstream hit %d times", n)
	}
}

// TestUpstreamDownIs502JSON: and the warning names the device and the
// session that met it, as every log line about a caller does.
func TestUpstreamDownIs502JSON(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	e := newEnvWith(t, envOptions{Gateway: func(c *gateway.Config) { c.Log = zap.New(core) }})
	e.addUser("VR-1", "1111", "1111", false)
	tok := e.login("VR-1", "1111", "1111")
	var s struct {
		SessionID string `json:"sessionId"`
	}
	if err := json.NewDecoder(e.send("GET", "/api/auth/session", tok, "", nil).Body).Decode(&s); err != nil || s.SessionID == "" {
		t.Fatalf("session: %v %+v", err, s)
	}
	e.up.Close()
	wantJSONError(t, e.send("GET", "/api/storage", tok, "", nil), http.StatusBadGateway, "bad_gateway")
	failed := logs.FilterMessage("upstream failed").All()
	if len(failed) != 1 {
		t.Fatalf("%d upstream failures logged, want 1: %v", len(failed), logs.All())
	}
	if f := failed[0].ContextMap(); f["device_id"] != "VR-1" || f["session_id"] != s.SessionID || f["status"] != int64(502) {
		t.Fatalf("upstream failure logged with %v, want device_id VR-1, session_id %s, status 502", f, s.SessionID)
	}
}

// TestStoreDownIs503AndNothingForwarded: fail closed.
func TestStoreDownIs503AndNothingForwarded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addUser("VR-1", "1111", "1111", false)
	tok := e.login("VR-1", "1111", "1111")
	e.pool.Close()
	wantJSONError(t, e.send("GET", "/api/storage", tok, "", nil), http.StatusServiceUnavailable, "unavailable")
	if n := e.up.hits.Load(); n != 0 {
		t.Fatalf("forwarded %d requests without a session check", n)
	}
	if resp := e.send("GET", "/readyz", "", "", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz %d with the store down", resp.StatusCode)
	}
	if resp := e.send("GET", "/healthz", "", "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
}

func TestDrainTurnsReadyzOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if resp := e.send("GET", "/readyz", "", "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz %d before drain", resp.StatusCode)
	}
	e.gw.Drain()
	if resp := e.send("GET", "/readyz", "", "", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz %d while draining", resp.StatusCode)
	}
}

func TestJWKSHasNoPrivatePart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	resp := e.send("GET", "/.well-known/jwks.json", "", "", nil)
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks: %v %+v", err, set)
	}
	if _, ok := set.Keys[0]["d"]; ok || set.Keys[0]["x"] == nil {
		t.Fatalf("jwks key %v", set.Keys[0])
	}
}

func TestBearerParsing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addUser("VR-1", "1111", "1111", false)
	tok := e.login("VR-1", "1111", "1111")
	// The scheme is case-insensitive (RFC 7235).
	if resp := e.send("GET", "/x", "", "", http.Header{"Authorization": {"bearer " + tok}}); resp.StatusCode != http.StatusCreated {
		t.Fatalf("lower-case scheme: %d", resp.StatusCode)
	}
	resp := e.send("GET", "/x", "", "", http.Header{"Authorization": {"Basic dTpw"}})
	wantJSONError(t, resp, http.StatusUnauthorized, "unauthorized")
	resp = e.send("GET", "/x", "", "", http.Header{"Authorization": {"Bearer " + tok, "Bearer " + tok}})
	wantJSONError(t, resp, http.StatusUnauthorized, "invalid_token")
	resp = e.send("GET", "/x", "", "", http.Header{"Authorization": {"Bearer " + strings.Repeat("a", 8000)}})
	wantJSONError(t, resp, http.StatusUnauthorized, "invalid_token")
}
