package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/proxy/internal/gateway"
	"github.com/authsidecar/authsidecar/proxy/internal/identity"
)

// The tests in this file each guard one attack of the hardening issue; the
// name says which. They use the env of gateway_test.go (a real upstream
// behind the gateway on httptest servers) unless they need raw bytes on the
// wire.

// identityNames are the header names the proxy sets, normalised.
var identityNames = map[string]bool{
	"x-auth-user-id": true, "x-auth-username": true, "x-auth-device-id": true,
	"x-auth-admin": true, "x-auth-session-id": true,
}

func normalisedName(k string) string { return strings.ToLower(strings.ReplaceAll(k, "_", "-")) }

// TestIdentityHeaderSpellingsAreStripped sends one spelling of an identity
// header at a time, so that a spelling the stripping misses is named.
func TestIdentityHeaderSpellingsAreStripped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addUser("VR-1", "1111", "1111", false)
	tok := e.login("VR-1", "1111", "1111")
	for _, name := range []string{
		"X-Auth-Device-Id", "x-auth-device-id", "X-AUTH-DEVICE-ID", "X_Auth_Device_Id", "x_auth_device_id",
		"X-Auth_Device-Id", "X_AUTH-DEVICE_ID", "X-Auth-Admin", "X_Auth_Admin", "X-Auth-User-Id", "X_Auth_User_Id",
		"X-Auth-Username", "x_auth_username", "X-Auth-Session-Id", "X_Auth_Session_Id", "X-Auth-Anything-Else",
	} {
		// Sent plainly, and listed in Connection as well: hop-by-hop
		// removal must neither be the only thing that strips it nor take
		// the proxy's own header with it.
		for _, hdr := range []http.Header{
			{name: {"VR-OTHER"}},
			{name: {"VR-OTHER"}, "Connection": {name}},
		} {
			resp := e.send("GET", "/x", tok, "", hdr)
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("%v: status %d", hdr, resp.StatusCode)
			}
			r, _ := e.up.lastRequest()
			for k, vs := range r.Header {
				n := normalisedName(k)
				if !strings.HasPrefix(n, "x-auth-") {
					continue
				}
				if !identityNames[n] || k != http.CanonicalHeaderKey(n) || len(vs) != 1 {
					t.Errorf("%v reached the backend as %s: %q", hdr, k, vs)
				}
				for _, v := range vs {
					if v == "VR-OTHER" {
						t.Errorf("%v: the backend read %s: %s", hdr, k, v)
					}
				}
			}
			if got := r.Header.Get("X-Auth-Device-Id"); got != "VR-1" {
				t.Errorf("%v: X-Auth-Device-Id = %q, want the proxy's VR-1", hdr, got)
			}
		}
	}
}

// TestClientForwardingHeadersAreReplaced: what a client says about its
// address, host or scheme is replaced by what the proxy saw, never appended
// to, in every spelling.
func TestClientForwardingHeadersAreReplaced(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addUser("VR-1", "1111", "1111", false)
	tok := e.login("VR-1", "1111", "1111")
	e.send("GET", "/x", tok, "", http.Header{
		"X-Forwarded-For":    {"10.9.9.9"},
		"X_Forwarded_For":    {"10.8.8.8"},
		"x-forwarded-host":   {"evil.example"},
		"X-Forwarded-Proto":  {"https"},
		"X-Forwarded-Port":   {"443"},
		"X-Forwarded-Prefix": {"/admin"},
		"X-Forwarded-Server": {"trusted"},
		"Forwarded":          {"for=10.7.7.7;proto=https"},
		"X-Real-Ip":          {"10.6.6.6"},
	})
	r, _ := e.up.lastRequest()
	if r == nil {
		t.Fatal("nothing reached the upstream")
	}
	if got := r.Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want only the client's address 127.0.0.1", got)
	}
	if got := r.Header.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != "http" {
		t.Errorf("X-Forwarded-Proto = %q, want http", got)
	}
	proxyHost := strings.TrimPrefix(e.srv.URL, "http://")
	if got := r.Header.Values("X-Forwarded-Host"); len(got) != 1 || got[0] != proxyHost {
		t.Errorf("X-Forwarded-Host = %q, want %s", got, proxyHost)
	}
	for k, vs := range r.Header {
		n := normalisedName(k)
		if n == "forwarded" || n == "x-real-ip" || (strings.HasPrefix(n, "x-forwarded-") &&
			k != "X-Forwarded-For" && k != "X-Forwarded-Proto" && k != "X-Forwarded-Host") {
			t.Errorf("client header %s: %q reached the backend", k, vs)
		}
	}
}

// TestH2CUpgradeInAnySpellingIsNotForwarded: an h2c upgrade would hand the
// client an HTTP/2 connection to the backend that the proxy no longer checks
// request by request (h2c smuggling), whatever the spelling of the offer.
func TestH2CUpgradeInAnySpellingIsNotForwarded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addUser("VR-1", "1111", "1111", false)
	tok := e.login("VR-1", "1111", "1111")
	for _, upgrade := range [][]string{
		{"h2c"}, {"H2C"}, {" h2c "}, {"websocket, h2c"}, {"h2c, websocket"}, {"foo,H2c"}, {"websocket", "h2c"},
	} {
		e.send("GET", "/x", tok, "", http.Header{
			"Upgrade":        upgrade,
			"Connection":     {"Upgrade, HTTP2-Settings"},
			"Http2-Settings": {"AAMAAABkAAQAAP__"},
		})
		r, _ := e.up.lastRequest()
		if r == nil {
			t.Fatal("nothing reached the upstream")
		}
		for _, v := range r.Header.Values("Upgrade") {
			if strings.Contains(strings.ToLower(v), "h2c") {
				t.Errorf("Upgrade %q: the backend was offered %q", upgrade, v)
			}
		}
		if r.Header.Get("Http2-Settings") != "" {
			t.Errorf("Upgrade %q: HTTP2-Settings forwarded", upgrade)
		}
	}
}

// rawExchange writes req to addr byte for byte (no client cleans or escapes
// the path) and reads one response.
func rawExchange(t *testing.T, addr, req string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: %v", req, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestPathSpellingsNeedAToken sends, as raw bytes, every spelling of a path
// that a router, a cleaner or a backend might resolve differently, without a
// token: none reaches the upstream. Only the proxy's own routes answer
// without one.
func TestPathSpellingsNeedAToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	for _, target := range []string{
		"/api/storage",
		"/healthz/../api/storage",
		"/healthz/./../api/storage",
		"/healthz/%2e%2e/api/storage",
		"/healthz/%2E%2E/api/storage",
		"/healthz/.%2e/api/storage",
		"/healthz%2f..%2fapi%2fstorage",
		"/healthz%2F..%2Fapi/storage",
		"/%2e%2e/api/storage",
		"//api/storage",
		"///healthz/../api/storage",
		"/healthz//../api/storage",
		"/healthz.",
		"/healthz..",
		"/healthz/.",
		"/healthz/",
		"/healthz%20",
		"/healthz%00",
		"/healthz;/../api/storage",
		"/healthz/..;/api/storage",
		"/healthz\\..\\api\\storage",
		"/healthz%5c..%5capi%5cstorage",
		"/HEALTHZ",
		"/readyz/../api/storage",
		"/.well-known/jwks.json/../../api/storage",
		"/.well-known/../api/storage",
		"/api/auth/login/../../storage",
		"/api/auth/%2e%2e/storage",
		"/api/auth/login%2f..%2f..%2fstorage",
		"/api/admin/../storage",
		"http://" + addr + "/healthz/../api/storage",
		"http://evil.example/api/storage",
		"*",
	} {
		for _, method := range []string{"GET", "POST", "OPTIONS"} {
			status, body := rawExchange(t, addr, method+" "+target+" HTTP/1.1\r\nHost: "+addr+"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			if status >= 200 && status < 300 && !(method == "OPTIONS" && target == "*") {
				t.Errorf("%s %s without a token: %d %s", method, target, status, body)
			}
		}
	}
	if n := e.up.hits.Load(); n != 0 {
		t.Fatalf("the upstream was reached %d times without a token", n)
	}
	// The public routes are exactly these.
	for _, p := range []string{"/healthz", "/readyz", "/.well-known/jwks.json"} {
		if status, body := rawExchange(t, addr, "GET "+p+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); status != http.StatusOK {
			t.Errorf("GET %s: %d %s", p, status, body)
		}
	}
	if n := e.up.hits.Load(); n != 0 {
		t.Fatalf("a public route was forwarded")
	}
}

// TestLoginBodyOver4KiBIsRefused: a login body is read into memory only up to
// gateway.MaxLoginBody. The over-sized body below holds the right
// credentials, so without the limit it would log in.
func TestLoginBodyOver4KiBIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addUser("VR-1", "1111", "1111", false)
	creds := `{"deviceId":"VR-1","username":"1111","password":"1111"}`
	fits := creds + strings.Repeat(" ", gateway.MaxLoginBody-len(creds))
	if resp := e.send("POST", "/api/auth/login", "", fits, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("a body of exactly %d bytes: %d %s", len(fits), resp.StatusCode, readAll(resp))
	}
	resp := e.send("POST", "/api/auth/login", "", fits+" ", nil)
	if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("a body of %d bytes: %d %s", len(fits)+1, resp.StatusCode, readAll(resp))
	}
	var body struct{ Error, Message string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error == "" {
		t.Fatalf("error body: %v %+v", err, body)
	}
}

// fuzzGateway is a gateway on a schema of its own whose upstream is a
// transport that only counts, so that each fuzz input costs little.
type fuzzGateway struct {
	gw    *gateway.Gateway
	ids   *identity.Service
	token string // a live session's token for VR-F / 1111
	hits  *atomic.Int64
}

type countingTransport struct{ hits *atomic.Int64 }

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.hits.Add(1)
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusCreated, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

func newFuzzGateway(f *testing.F) *fuzzGateway {
	ctx := context.Background()
	fg := &fuzzGateway{hits: new(atomic.Int64)}
	up, _ := url.Parse("http://upstream.invalid")
	e := newEnvWith(f, envOptions{Upstream: up, Gateway: func(cfg *gateway.Config) {
		cfg.Transport = countingTransport{fg.hits}
	}})
	fg.gw, fg.ids = e.gw, e.ids
	if _, err := fg.ids.AddUser(ctx, "VR-F", "1111", "1111", false); err != nil {
		f.Fatal(err)
	}
	rec := fg.serve("POST", "/api/auth/login", `{"deviceId":"VR-F","username":"1111","password":"1111"}`, nil)
	var lb struct{ Token string }
	if err := json.Unmarshal(rec.Body.Bytes(), &lb); err != nil || lb.Token == "" {
		f.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	fg.token = lb.Token
	return fg
}

func (fg *fuzzGateway) serve(method, path, body string, hdr http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	fg.gw.ServeHTTP(rec, req)
	return rec
}

// checkErrorBody fails unless rec is a JSON error body with a code and a
// message.
func checkErrorBody(t *testing.T, rec *httptest.ResponseRecorder, input any) {
	t.Helper()
	var e struct{ Error, Message string }
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%d with Content-Type %q for input %q", rec.Code, ct, input)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" || e.Message == "" {
		t.Fatalf("%d with a body that is not a JSON error: %q (input %q)", rec.Code, rec.Body, input)
	}
}

// FuzzLoginBody posts arbitrary bytes to the login route: the answer is a
// login (200), a refusal the client can act on (400, 401, 413, 429 with
// Retry-After) or 503 "busy", always with a JSON body, never another 5xx.
// The seed corpus runs with every `go test`.
func FuzzLoginBody(f *testing.F) {
	fg := newFuzzGateway(f)
	for _, seed := range []string{
		`{"deviceId":"VR-F","username":"1111","password":"1111"}`,
		`{"deviceId":"VR-F","username":"1111","password":"1112"}`,
		`{"deviceId":"VR-NONE","username":"1111","password":"1111"}`,
		`{"deviceId":"VR-F","username":"1111","password":"1111","isAdmin":true}`,
		`{"deviceId":"VR-F","username":"1111"}`,
		`{"deviceId":"","username":"1111","password":"1"}`,
		`{"deviceId":"VR-F","username":"` + strings.Repeat("u", identity.MaxNameLen+1) + `","password":"1"}`,
		`{"deviceId":"VR\u0000F","username":"1111","password":"1"}`,
		`{"deviceId":"VR-F","username":"a\nb","password":"1"}`,
		`{"deviceId":"VR-F","username":"\ud800","password":"1"}`,
		"{\"deviceId\":\"\xff\",\"username\":\"1111\",\"password\":\"\x00\"}",
		`{"deviceId":"VR-F","username":"1111","password":"` + strings.Repeat("p", gateway.MaxLoginBody) + `"}`,
		`{"deviceId":1,"username":"1111","password":"1111"}`,
		`{"deviceId":"VR-F","username":"1111","password":"1111"} {}`,
		`{"deviceId":"VR-F","username":"1111","password":"1111"}garbage`,
		`[{"deviceId":"VR-F"}]`,
		`null`,
		``,
		`{`,
		strings.Repeat("[", 3000),
		"\x00\xff",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := fg.serve("POST", "/api/auth/login", string(body), http.Header{"Content-Type": {"application/json"}})
		switch rec.Code {
		case http.StatusOK:
			var lb struct {
				Token string
				User  struct{ DeviceID, Username string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &lb); err != nil || lb.Token == "" || lb.User.DeviceID != "VR-F" {
				t.Fatalf("200 with body %q for input %q", rec.Body, body)
			}
		case http.StatusTooManyRequests:
			if n, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || n < 1 {
				t.Fatalf("429 with Retry-After %q", rec.Header().Get("Retry-After"))
			}
			checkErrorBody(t, rec, body)
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusRequestEntityTooLarge:
			checkErrorBody(t, rec, body)
		case http.StatusServiceUnavailable:
			checkErrorBody(t, rec, body)
			if !strings.Contains(rec.Body.String(), `"busy"`) {
				t.Fatalf("503 other than busy: %s (input %q)", rec.Body, body)
			}
		default:
			t.Fatalf("status %d (%s) for input %q", rec.Code, rec.Body, body)
		}
	})
}

// FuzzAuthorizationHeader is the token parser's path as a client reaches
// it: any Authorization header on a forwarded route. Nothing is forwarded
// unless the header is "Bearer" and the exact token the proxy issued; every
// refusal is a JSON 401 (or 503 when the store cannot answer), never another
// 5xx. The seed corpus runs with every `go test`.
func FuzzAuthorizationHeader(f *testing.F) {
	fg := newFuzzGateway(f)
	tok := fg.token
	parts := strings.Split(tok, ".")
	for _, seed := range []string{
		"Bearer " + tok,
		"bearer " + tok,
		"BEARER  " + tok + " ",
		"Bearer " + tok + "\n",
		"Bearer " + tok + ".",
		"Bearer " + parts[0] + "." + parts[1] + ".",
		"Bearer " + parts[0] + "." + parts[1] + "\n." + parts[2],
		"Bearer " + tok[:len(tok)-1],
		"Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + ".",
		"Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + parts[1] + "." + parts[2],
		"Bearer " + strings.Repeat("a", gateway.MaxAuthorizationBytes),
		"Bearer " + tok + strings.Repeat("=", gateway.MaxAuthorizationBytes),
		"Basic dTpw",
		"Bearer",
		"Bearer ",
		"",
		"Token " + tok,
		tok,
		"\x00Bearer " + tok,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, authz string) {
		before := fg.hits.Load()
		rec := fg.serve("GET", "/api/storage/k", "", http.Header{"Authorization": {authz}})
		forwarded := fg.hits.Load() != before
		scheme, rest, _ := strings.Cut(authz, " ")
		genuine := strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(rest) == tok
		switch {
		case forwarded && !genuine:
			t.Fatalf("forwarded with Authorization %q", authz)
		case forwarded:
			if rec.Code != http.StatusCreated {
				t.Fatalf("genuine token forwarded but answered %d", rec.Code)
			}
		case genuine:
			t.Fatalf("the genuine token in %q was refused: %d %s", authz, rec.Code, rec.Body)
		case rec.Code == http.StatusUnauthorized:
			checkErrorBody(t, rec, authz)
			if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer ") {
				t.Fatalf("401 without a Bearer challenge")
			}
			if len(tok) > 0 && strings.Contains(rec.Body.String(), parts[2]) {
				t.Fatalf("the error body quotes the token")
			}
		default:
			t.Fatalf("status %d (%s) for Authorization %q", rec.Code, rec.Body, authz)
		}
	})
}

// TestReadyzDoesNotDiscloseTheCause: /readyz is public, and the error of a
// database that does not answer names its host, user and database; the
// body says only that the proxy is not ready (the log has the cause).
func TestReadyzDoesNotDiscloseTheCause(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const secret = "host=db.internal user=authsidecar database=prod"
	e.gw = gateway.New(gateway.Config{
		Upstream: mustParse(e.up.URL), Sessions: e.sessions, JWKS: []byte(`{"keys":[]}`),
		Ready: func(context.Context) error { return errors.New("failed to connect to `" + secret + "`: dial error") },
		Log:   zap.NewNop(),
	})
	rec := httptest.NewRecorder()
	e.gw.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("readyz %d", rec.Code)
	}
	if strings.Contains(rec.Body.String(), "db.internal") || strings.Contains(rec.Body.String(), "authsidecar") {
		t.Fatalf("readyz body discloses the cause: %s", rec.Body)
	}
}

func mustParse(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
