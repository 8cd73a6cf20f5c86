package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/devicegrant"
	"github.com/authsidecar/authsidecar/proxy/internal/gateway"
)

// deviceAuthorization is the answer of /api/auth/device/code.
type deviceAuthorization struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// newDeviceEnv is an env that serves the device grant; its polls are
// held only a moment, so that a pending answer comes at once.
func newDeviceEnv(t *testing.T, cfg devicegrant.Config, gw func(*gateway.Config)) *env {
	t.Helper()
	if cfg.MaxHold == 0 {
		cfg.MaxHold = time.Millisecond
	}
	return newEnvWith(t, envOptions{Device: &cfg, Gateway: gw})
}

func (e *env) deviceCode(body string, hdr http.Header) deviceAuthorization {
	e.t.Helper()
	resp := e.send("POST", "/api/auth/device/code", "", body, hdr)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("device code: %d %s", resp.StatusCode, readAll(resp))
	}
	var a deviceAuthorization
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		e.t.Fatal(err)
	}
	return a
}

var form = http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}

// wantTokenError checks an RFC 8628 error answer: 400, the code, and the
// description OAuth libraries read as well as the message.
func wantTokenError(t *testing.T, resp *http.Response, code string) {
	t.Helper()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400: %s", resp.StatusCode, readAll(resp))
	}
	var body struct {
		Error       string `json:"error"`
		Message     string `json:"message"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body.Error != code || body.Message == "" || body.Description != body.Message {
		t.Fatalf("body %+v, want %q with a message and the same error_description", body, code)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("Cache-Control %q", resp.Header.Get("Cache-Control"))
	}
}

var userCodeRE = regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`)

// The device's side, in JSON and in the RFC's form encoding: the fields of
// RFC 8628 §3.2, a verification URI on the host the device reached.
func TestDeviceCodeAnswer(t *testing.T) {
	t.Parallel()
	e := newDeviceEnv(t, devicegrant.Config{}, nil)
	host := strings.TrimPrefix(e.srv.URL, "http://")
	for name, a := range map[string]deviceAuthorization{
		"json": e.deviceCode(`{"deviceId":"HS-1"}`, nil),
		"form": e.deviceCode(`client_id=HS-1&scope=`, form),
	} {
		if len(a.DeviceCode) < 43 || !userCodeRE.MatchString(a.UserCode) || a.ExpiresIn != 600 || a.Interval != 5 ||
			a.VerificationURI != "http://"+host+"/device" ||
			a.VerificationURIComplete != "http://"+host+"/device?user_code="+url.QueryEscape(a.UserCode) {
			t.Errorf("%s: %+v", name, a)
		}
	}
	for body, hdr := range map[string]http.Header{
		`{}`:                      nil,
		`{"deviceId":""}`:         nil,
		`not json`:                nil,
		``:                        form,
		`client_id=A&client_id=B`: form,
	} {
		wantJSONError(t, e.send("POST", "/api/auth/device/code", "", body, hdr), http.StatusBadRequest, "invalid_request")
	}
}

// Behind a trusted load balancer that ends TLS, the verification URI is
// the public one it names.
func TestDeviceVerificationURIBehindTrustedProxy(t *testing.T) {
	t.Parallel()
	e := newDeviceEnv(t, devicegrant.Config{}, func(c *gateway.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	a := e.deviceCode(`{"deviceId":"HS-1"}`, http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"auth.example.org"}})
	if a.VerificationURI != "https://auth.example.org/device" {
		t.Fatalf("verification_uri %q", a.VerificationURI)
	}
	// A host that would change the URL's meaning is not taken.
	a = e.deviceCode(`{"deviceId":"HS-1"}`, http.Header{"X-Forwarded-Host": {"evil.example/x?"}})
	if !strings.HasPrefix(a.VerificationURI, "http://127.0.0.1:") {
		t.Fatalf("verification_uri %q", a.VerificationURI)
	}
	// Without TRUSTED_PROXIES the headers are the client's own, and ignored.
	plain := newDeviceEnv(t, devicegrant.Config{}, nil)
	a = plain.deviceCode(`{"deviceId":"HS-1"}`, http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"auth.example.org"}})
	if !strings.HasPrefix(a.VerificationURI, "http://127.0.0.1:") {
		t.Fatalf("untrusted headers used: %q", a.VerificationURI)
	}
}

// The whole flow over HTTP: pending, approved with the PIN, the login's
// answer once, then invalid_grant; the token works.
func TestDeviceFlowOverHTTP(t *testing.T) {
	t.Parallel()
	e := newDeviceEnv(t, devicegrant.Config{}, nil)
	e.addUser("HS-1", "1111", "4321", false)
	a := e.deviceCode(`{"deviceId":"HS-1"}`, nil)

	wantTokenError(t, e.send("POST", "/api/auth/device/token", "", `{"device_code":"`+a.DeviceCode+`"}`, nil), "authorization_pending")
	resp := e.send("POST", "/api/auth/device/approve", "", `{"user_code":"`+strings.ToLower(a.UserCode)+`","username":"1111","password":"4321"}`, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("approve: %d %s", resp.StatusCode, readAll(resp))
	}
	// The form a library sends. An approved request is answered however
	// soon after the last poll it comes.
	resp = e.send("POST", "/api/auth/device/token", "",
		"grant_type="+url.QueryEscape("urn:ietf:params:oauth:grant-type:device_code")+"&device_code="+a.DeviceCode+"&client_id=HS-1", form)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %s", resp.StatusCode, readAll(resp))
	}
	var tok struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expiresAt"`
		User      struct {
			ID, Username, DeviceID string
			IsAdmin                bool
		} `json:"user"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		t.Fatal(err)
	}
	if tok.Token == "" || tok.ExpiresAt.IsZero() || tok.User.Username != "1111" || tok.User.DeviceID != "HS-1" || tok.User.ID == "" {
		t.Fatalf("token answer %+v", tok)
	}
	if resp := e.send("GET", "/api/auth/session", tok.Token, "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("the device's token: %d %s", resp.StatusCode, readAll(resp))
	}
	wantTokenError(t, e.send("POST", "/api/auth/device/token", "", `{"device_code":"`+a.DeviceCode+`"}`, nil), "invalid_grant")
}

func TestDeviceTokenRefusals(t *testing.T) {
	t.Parallel()
	e := newDeviceEnv(t, devicegrant.Config{}, nil)
	a := e.deviceCode(`{"deviceId":"HS-1"}`, nil)
	wantTokenError(t, e.send("POST", "/api/auth/device/token", "", "grant_type=password&device_code="+a.DeviceCode, form), "unsupported_grant_type")
	wantTokenError(t, e.send("POST", "/api/auth/device/token", "", `{"grant_type":"client_credentials","device_code":"x"}`, nil), "unsupported_grant_type")
	wantTokenError(t, e.send("POST", "/api/auth/device/token", "", `{"device_code":"nope"}`, nil), "invalid_grant")
	wantTokenError(t, e.send("POST", "/api/auth/device/token", "", `{"device_code":"`+a.DeviceCode+`","client_id":"HS-2"}`, nil), "invalid_grant")
	wantJSONError(t, e.send("POST", "/api/auth/device/token", "", "device_code="+a.DeviceCode, form), http.StatusBadRequest, "invalid_request")
	wantJSONError(t, e.send("POST", "/api/auth/device/token", "", `{}`, nil), http.StatusBadRequest, "invalid_request")
	wantJSONError(t, e.send("POST", "/api/auth/device/token", "", `{"device_code":1}`, nil), http.StatusBadRequest, "invalid_request")

	// Polled again at once, sooner than the interval: slow_down.
	wantTokenError(t, e.send("POST", "/api/auth/device/token", "", `{"device_code":"`+a.DeviceCode+`"}`, nil), "authorization_pending")
	wantTokenError(t, e.send("POST", "/api/auth/device/token", "", `{"device_code":"`+a.DeviceCode+`"}`, nil), "slow_down")

	resp := e.send("POST", "/api/auth/device/deny", "", `{"user_code":"`+a.UserCode+`"}`, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("deny: %d %s", resp.StatusCode, readAll(resp))
	}
	wantTokenError(t, e.send("POST", "/api/auth/device/token", "", `{"device_code":"`+a.DeviceCode+`"}`, nil), "access_denied")
	wantJSONError(t, e.send("POST", "/api/auth/device/deny", "", `{"user_code":"`+a.UserCode+`"}`, nil), http.StatusConflict, "already_decided")
}

// Approving checks the PIN as a login does; the user must be the device's;
// unknown codes are counted per address, and past the limit refused with
// Retry-After.
func TestDeviceApproveRefusals(t *testing.T) {
	t.Parallel()
	e := newDeviceEnv(t, devicegrant.Config{MaxGuesses: 2}, nil)
	e.addUser("HS-1", "1111", "4321", false)
	e.addUser("HS-2", "2222", "4321", false)
	a := e.deviceCode(`{"deviceId":"HS-1"}`, nil)
	approve := func(code, user, pin string) *http.Response {
		return e.send("POST", "/api/auth/device/approve", "", `{"user_code":"`+code+`","username":"`+user+`","password":"`+pin+`"}`, nil)
	}
	wantJSONError(t, approve(a.UserCode, "1111", "0000"), http.StatusUnauthorized, "invalid_credentials")
	wantJSONError(t, approve(a.UserCode, "2222", "4321"), http.StatusUnauthorized, "invalid_credentials")
	wantJSONError(t, approve(a.UserCode, "1111", ""), http.StatusBadRequest, "invalid_request")
	wantJSONError(t, approve("AEIO-UAEI", "1111", "4321"), http.StatusBadRequest, "invalid_request")
	wrong := "ZZZZ-ZZZZ"
	if a.UserCode == wrong {
		wrong = "XXXX-XXXX"
	}
	wantJSONError(t, approve(wrong, "1111", "4321"), http.StatusNotFound, "unknown_code")
	wantJSONError(t, e.send("POST", "/api/auth/device/deny", "", `{"user_code":"`+wrong+`"}`, nil), http.StatusNotFound, "unknown_code")
	resp := approve(a.UserCode, "1111", "4321")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("past the limit: %d, Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), readAll(resp))
	}
	wantJSONError(t, resp, http.StatusTooManyRequests, "too_many_attempts")
}

// The approval page: HTML with a strict Content-Security-Policy and nothing
// from elsewhere; with a user code it names the device that asks.
func TestDevicePage(t *testing.T) {
	t.Parallel()
	e := newDeviceEnv(t, devicegrant.Config{}, nil)
	a := e.deviceCode(`{"deviceId":"HS-<1>"}`, nil)

	page := func(path string, status int) string {
		t.Helper()
		resp := e.send("GET", path, "", "", nil)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != status {
			t.Fatalf("GET %s: %d, want %d: %s", path, resp.StatusCode, status, b)
		}
		h := resp.Header
		if h.Get("Content-Type") != "text/html; charset=utf-8" || h.Get("Cache-Control") != "no-store" ||
			h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("GET %s headers %v", path, h)
		}
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'sha256-", "style-src 'sha256-", "connect-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Fatalf("CSP %q lacks %q", csp, want)
			}
		}
		if regexp.MustCompile(`(?i)(src|href)=`).Match(b) {
			t.Fatalf("GET %s loads something: %s", path, b)
		}
		return string(b)
	}
	body := page("/device", http.StatusOK)
	if !strings.Contains(body, `<label for="user_code">`) || strings.Contains(body, `id="approve-form"`) {
		t.Fatalf("without a code: %s", body)
	}
	body = page("/device?user_code="+url.QueryEscape(a.VerificationURIComplete[strings.Index(a.VerificationURIComplete, "=")+1:]), http.StatusOK)
	if !strings.Contains(body, "HS-&lt;1&gt;") || !strings.Contains(body, a.UserCode) || !strings.Contains(body, `<label for="password">PIN</label>`) {
		t.Fatalf("with the code: %s", body)
	}
	wrong := "ZZZZ-ZZZZ"
	if a.UserCode == wrong {
		wrong = "XXXX-XXXX"
	}
	body = page("/device?user_code="+wrong, http.StatusNotFound)
	if !strings.Contains(body, `role="alert"`) || !strings.Contains(body, "no request waits with this code") {
		t.Fatalf("unknown code: %s", body)
	}
	page("/device?user_code=%3Cscript%3E", http.StatusBadRequest)
	if resp := e.send("HEAD", "/device", "", "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD /device: %d", resp.StatusCode)
	}
}

// Without the device grant configured its routes are the proxy's own, and
// answer 404: nothing is forwarded.
func TestDeviceRoutesWithoutGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, r := range []struct{ method, path string }{
		{"POST", "/api/auth/device/code"}, {"POST", "/api/auth/device/token"},
		{"POST", "/api/auth/device/approve"}, {"POST", "/api/auth/device/deny"}, {"GET", "/device"},
	} {
		wantJSONError(t, e.send(r.method, r.path, "", `{}`, nil), http.StatusNotFound, "not_found")
	}
	if n := e.up.hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the upstream", n)
	}
}
