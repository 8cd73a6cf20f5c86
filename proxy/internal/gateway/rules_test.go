package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/proxy/internal/gateway"
)

// rulesEnv is an env with route rules, a user (VR-1/1111) and an admin
// (VR-1/admin), and their tokens.
func rulesEnv(t *testing.T, public, admin []string) (e *env, user, root string) {
	t.Helper()
	rules, err := gateway.NewRules(public, admin)
	if err != nil {
		t.Fatal(err)
	}
	e = newEnvWith(t, envOptions{Gateway: func(c *gateway.Config) { c.Rules = rules }})
	e.addUser("VR-1", "1111", "1111", false)
	e.addUser("VR-1", "admin", "9999", true)
	return e, e.login("VR-1", "1111", "1111"), e.login("VR-1", "admin", "9999")
}

// forwardedAs sends the request and, when it reached the upstream, returns
// the X-Auth-Username the upstream saw ("" for none); reached is false when
// the proxy answered itself, with the status it answered.
func (e *env) forwardedAs(method, path, tok string, hdr http.Header) (username string, reached bool, status int) {
	e.t.Helper()
	before := e.up.hits.Load()
	resp := e.send(method, path, tok, "", hdr)
	if e.up.hits.Load() == before {
		return "", false, resp.StatusCode
	}
	r, _ := e.up.lastRequest()
	if vs := r.Header.Values(gateway.HeaderUsername); len(vs) > 0 {
		return vs[0], true, resp.StatusCode
	}
	if len(r.Header.Values(gateway.HeaderDeviceID)) > 0 || len(r.Header.Values(gateway.HeaderAdmin)) > 0 {
		e.t.Fatalf("%s %s reached the upstream with identity headers but no username: %v", method, path, r.Header)
	}
	return "", true, resp.StatusCode
}

func TestPublicRoutes(t *testing.T) {
	t.Parallel()
	e, user, _ := rulesEnv(t, []string{"GET /api/health", "/static/"}, nil)
	forged := http.Header{gateway.HeaderUsername: {"root"}, gateway.HeaderAdmin: {"true"}, "X_Auth_Device_Id": {"OTHER"}}
	for _, c := range []struct {
		method, path, tok string
		hdr               http.Header
		want              string // the username the upstream sees; "-" for not forwarded
	}{
		{"GET", "/api/health", "", nil, ""},
		{"HEAD", "/api/health", "", nil, ""},
		{"GET", "/api/health", "", forged, ""},
		{"GET", "/api/health", user, forged, "1111"},
		{"GET", "/api/health", "not-a-token", nil, ""},
		{"POST", "/api/health", "", nil, "-"},
		{"POST", "/api/health", user, nil, "1111"},
		{"GET", "/api/health/more", "", nil, "-"},
		{"GET", "/static/app.js", "", nil, ""},
		{"DELETE", "/static/a/b", "", forged, ""},
		{"GET", "/static", "", nil, "-"},
		{"GET", "/api/storage", "", nil, "-"},
	} {
		got, reached, status := e.forwardedAs(c.method, c.path, c.tok, c.hdr)
		switch {
		case c.want == "-" && reached:
			t.Errorf("%s %s (token %v): forwarded", c.method, c.path, c.tok != "")
		case c.want != "-" && !reached:
			t.Errorf("%s %s (token %v): not forwarded, %d", c.method, c.path, c.tok != "", status)
		case reached && got != c.want:
			t.Errorf("%s %s (token %v): forwarded as %q, want %q", c.method, c.path, c.tok != "", got, c.want)
		}
	}
}

func TestAdminRoutes(t *testing.T) {
	t.Parallel()
	e, user, root := rulesEnv(t, []string{"GET /admin/health"}, []string{"/admin/", "DELETE /api/records/{id}"})
	wantJSONError(t, e.send("GET", "/admin/users", "", "", nil), http.StatusUnauthorized, "unauthorized")
	wantJSONError(t, e.send("GET", "/admin/users", user, "", nil), http.StatusForbidden, "insufficient_scope")
	wantJSONError(t, e.send("DELETE", "/api/records/7", user, "", nil), http.StatusForbidden, "insufficient_scope")
	if got, reached, _ := e.forwardedAs("GET", "/admin/users", root, nil); !reached || got != "admin" {
		t.Fatalf("admin on an admin route: reached %v as %q", reached, got)
	}
	// The most specific pattern wins: a public route inside the admin tree.
	if got, reached, _ := e.forwardedAs("GET", "/admin/health", "", nil); !reached || got != "" {
		t.Fatalf("public route inside an admin subtree: reached %v as %q", reached, got)
	}
	if got, reached, _ := e.forwardedAs("GET", "/api/records/7", user, nil); !reached || got != "1111" {
		t.Fatalf("GET of a route only DELETE protects: reached %v as %q", reached, got)
	}
	if n := e.up.hits.Load(); n != 3 {
		t.Fatalf("upstream reached %d times, want 3", n)
	}
}

// TestAmbiguousPathsAreRefused: no spelling of a path reaches the upstream
// past a rule, or past the proxy's own routes, that its plain form meets;
// each is 400, even with a valid token.
func TestAmbiguousPathsAreRefused(t *testing.T) {
	t.Parallel()
	e, user, _ := rulesEnv(t, nil, []string{"/admin/"})
	for _, p := range []string{
		"/api/admin%2fsessions", "/api/admin%2Fsessions", "/api%2fauth/session",
		"/API/AUTH/session", "/Api/Admin/sessions", "/HEALTHZ", "/.WELL-KNOWN/jwks.json",
		"/api/auth;x/session", "/api/auth/session;x", "/admin;/users",
		"/api/auth./session", "/api/auth%20/session", "/admin./users", "/ADMIN/users", "/Admin/users",
		"/x/../admin/users", "/x/%2e%2e/admin/users", "/./admin/users", "/x//admin/users", "/admin//users",
		"/x\\..\\admin\\users", "/x%5c..%5cadmin", "/admin%5Cusers",
	} {
		resp := e.send("GET", p, user, "", nil)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", p, resp.StatusCode)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: 400 as %s", p, ct)
		}
	}
	if n := e.up.hits.Load(); n != 0 {
		t.Fatalf("an ambiguous path reached the upstream %d times", n)
	}
	// Capitals and dots that change nothing are paths like any other.
	for _, p := range []string{"/api/storage/Key-1", "/files/v1.2/readme.txt", "/Static/x"} {
		if _, reached, status := e.forwardedAs("GET", p, user, nil); !reached {
			t.Errorf("GET %s: not forwarded, %d", p, status)
		}
	}
}

// verifyAs asks /api/auth/verify about method and uri with the given
// headers naming them.
func (e *env) verifyAs(method, uri, tok string, nginx bool) *http.Response {
	e.t.Helper()
	h := http.Header{"X-Forwarded-Method": {method}, "X-Forwarded-Uri": {uri}}
	if nginx {
		h = http.Header{"X-Original-Method": {method}, "X-Original-Uri": {uri}}
	}
	return e.send("GET", "/api/auth/verify", tok, "", h)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	e, user, root := rulesEnv(t, []string{"GET /public/"}, []string{"/admin/"})
	for _, nginx := range []bool{false, true} {
		resp := e.verifyAs("POST", "/api/storage?x=1", user, nginx)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("verify with a token: %d %s", resp.StatusCode, readAll(resp))
		}
		for k, v := range map[string]string{gateway.HeaderUsername: "1111", gateway.HeaderDeviceID: "VR-1", gateway.HeaderAdmin: "false"} {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
		if resp.Header.Get(gateway.HeaderUserID) == "" || resp.Header.Get(gateway.HeaderSessionID) == "" {
			t.Errorf("identity incomplete: %v", resp.Header)
		}
		if b := readAll(resp); b != "" {
			t.Errorf("a body on 200: %q", b)
		}

		resp = e.verifyAs("POST", "/api/storage", "", nginx)
		if resp.Header.Get("WWW-Authenticate") == "" {
			t.Error("401 without WWW-Authenticate")
		}
		wantJSONError(t, resp, http.StatusUnauthorized, "unauthorized")
		wantJSONError(t, e.verifyAs("GET", "/admin/x", user, nginx), http.StatusForbidden, "insufficient_scope")
		if resp := e.verifyAs("GET", "/admin/x", root, nginx); resp.StatusCode != 200 || resp.Header.Get(gateway.HeaderAdmin) != "true" {
			t.Errorf("admin on an admin route: %d %v", resp.StatusCode, resp.Header)
		}
		resp = e.verifyAs("GET", "/public/x", "", nginx)
		if resp.StatusCode != 200 || resp.Header.Get(gateway.HeaderUsername) != "" {
			t.Errorf("public route without a token: %d %v", resp.StatusCode, resp.Header)
		}
		wantJSONError(t, e.verifyAs("GET", "/API/AUTH/session", user, nginx), http.StatusBadRequest, "invalid_request")
		wantJSONError(t, e.verifyAs("GET", "/x/../admin/x", user, nginx), http.StatusBadRequest, "invalid_request")
	}
	// Without the headers and without rules, the verify request itself is
	// the original.
	plain, tok, _ := upstreamAt(t, "", envOptions{}, nil)
	if resp := plain.send("PUT", "/api/auth/verify", tok, "", nil); resp.StatusCode != 200 {
		t.Fatalf("verify of itself: %d", resp.StatusCode)
	}
	// A logout is refused at the very next question.
	e.send("POST", "/api/auth/logout", user, "", nil)
	wantJSONError(t, e.verifyAs("GET", "/api/storage", user, false), http.StatusUnauthorized, "invalid_token")
	if n := e.up.hits.Load(); n != 0 {
		t.Fatalf("verify forwarded %d requests", n)
	}
}

func TestNewRulesRefusesOwnRoutes(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"/", "/api/", "/api/auth/", "/api/auth/verify", "GET /api/auth/session", "/api/admin/sessions/{id}", "/healthz", "/readyz", "/.well-known/", "/{x}/auth/login"} {
		if _, err := gateway.NewRules([]string{p}, nil); err == nil {
			t.Errorf("public %q over the proxy's own routes was accepted", p)
		}
		if _, err := gateway.NewRules(nil, []string{p}); err == nil {
			t.Errorf("admin %q over the proxy's own routes was accepted", p)
		}
	}
	if _, err := gateway.NewRules([]string{"GET /{$}", "/api/health", "POST /webhooks/"}, []string{"/admin/"}); err != nil {
		t.Fatalf("valid rules refused: %v", err)
	}
}

// TestEveryRefusalIsJSON: paths the router would have redirected (with an
// HTML body) are answered in JSON like every other error.
func TestEveryRefusalIsJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, p := range []string{"/api/auth", "/api/admin", "/api/auth/nothing", "/x/../y", "/a//b"} {
		resp := e.send("GET", p, "", "", nil)
		if resp.StatusCode/100 == 3 || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: %d %s", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

// TestNumericPINSaysToSendAString: a headset app that sends the PIN as a
// number learns what to fix.
func TestNumericPINSaysToSendAString(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	resp := e.send("POST", "/api/auth/login", "", `{"deviceId":"VR-1","username":"1111","password":1111}`, http.Header{"Content-Type": {"application/json"}})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if body := readAll(resp); !strings.Contains(body, "password must be a JSON string") {
		t.Fatalf("body %s does not say the PIN must be a string", body)
	}
}

// TestVerifyBelievesNoClientAboutTheOriginal: an ingress sets one pair of
// original-request headers and may pass a client's copy of the other pair
// through; where they disagree, verify refuses rather than believe either.
// With route rules, a verify request that names no original is refused
// (the rules would not apply to it).
func TestVerifyBelievesNoClientAboutTheOriginal(t *testing.T) {
	t.Parallel()
	e, user, _ := rulesEnv(t, nil, []string{"/admin/"})
	for _, h := range []http.Header{
		{"X-Original-Method": {"DELETE"}, "X-Original-Uri": {"/admin/x"}, "X-Forwarded-Method": {"GET"}},
		{"X-Original-Method": {"GET"}, "X-Original-Uri": {"/admin/x"}, "X-Forwarded-Uri": {"/public"}},
		{"X-Original-Url": {"http://example.com/admin/x"}, "X-Forwarded-Uri": {"/public"}},
		{"X-Forwarded-Uri": {"/public", "/admin/x"}},
		{},
	} {
		resp := e.send("GET", "/api/auth/verify", user, "", h)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("verify with %v: %d, want 400", h, resp.StatusCode)
		}
	}
	// ingress-nginx's X-Original-URL is read, and an agreeing pair is fine.
	resp := e.send("GET", "/api/auth/verify", user, "", http.Header{"X-Original-Url": {"http://example.com/admin/x?y=1"}, "X-Original-Uri": {"/admin/x?y=1"}})
	wantJSONError(t, resp, http.StatusForbidden, "insufficient_scope")
}
