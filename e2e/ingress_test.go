package e2e

// The proxy in forward-auth mode behind a real nginx and a real Caddy. Each
// ingress runs the example configuration of deploy/forward-auth as it is,
// with only its addresses replaced, so that what the deploy folder shows is
// what these tests prove: the ingress asks the proxy's /api/auth/verify
// about every request, copies the identity of a 200 onto it, and forwards
// it to the real storage backend itself.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// forwardAuthDir holds the ingress examples the tests run.
const forwardAuthDir = "../deploy/forward-auth"

// identityHeaderNames are the headers the proxy vouches for, as it names them.
var identityHeaderNames = []string{"X-Auth-User-Id", "X-Auth-Username", "X-Auth-Device-Id", "X-Auth-Admin", "X-Auth-Session-Id"}

// The route rules of the ingress tests: a device's records under public/
// may be read without a token, and only admins delete records.
const (
	ingressPublicRoutes = "GET /api/storage/public/"
	ingressAdminRoutes  = "DELETE /api/storage/"
)

// ingressKinds are the ingresses under test, each started from its example.
var ingressKinds = []struct {
	name  string
	start func(t *testing.T, proxyAddr, backendAddr string) *ingress
}{
	{"nginx", startNginx},
	{"caddy", startCaddy},
}

// ingressUpstreamEnv are the proxy settings of the ingress tests. The
// ingress forwards, the proxy only answers: with nothing listening at its
// UPSTREAM_URL, a request the proxy forwarded itself would come back 502.
func ingressUpstreamEnv() map[string]string {
	return map[string]string{
		"PUBLIC_ROUTES": ingressPublicRoutes,
		"ADMIN_ROUTES":  ingressAdminRoutes,
		"UPSTREAM_URL":  noUpstream,
	}
}

func TestIngressForwardAuth(t *testing.T) {
	t.Parallel()
	for _, kind := range ingressKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, ingressUpstreamEnv())
			const deviceA, deviceB = "VR-INGRESS-A", "VR-INGRESS-B"
			s.AddUser(deviceA, "1111", "pin-1111", false)
			s.AddUser(deviceA, "9999", "pin-9999", true)
			s.AddUser(deviceB, "2222", "pin-2222", false)
			in := kind.start(t, s.Proxy.Addr, s.Backend.Addr)

			// Logins go through the ingress too: it routes the proxy's own
			// routes to the proxy.
			tokA := in.login(t, deviceA, "1111", "pin-1111")
			tokB := in.login(t, deviceB, "2222", "pin-2222")
			tokAdmin := in.login(t, deviceA, "9999", "pin-9999")

			t.Run("a token stores a record", func(t *testing.T) {
				r := in.send(t, "POST", "/api/storage", tokA, `{"key":"ingress-1","data":{"n":1}}`, nil)
				if r.Status != http.StatusCreated {
					t.Fatalf("POST with a token: %d %s, want 201", r.Status, r.Body)
				}
				in.wantRecord(t, tokA, "ingress-1", `{"n":1}`)
			})

			t.Run("without a token nothing is stored", func(t *testing.T) {
				r := in.send(t, "POST", "/api/storage", "", `{"key":"ingress-anon","data":1}`, nil)
				wantChallenge(t, r, "unauthorized", `Bearer realm=`)
				in.wantNoRecord(t, tokA, "ingress-anon")
			})

			t.Run("a refused token stores nothing", func(t *testing.T) {
				r := in.send(t, "POST", "/api/storage", "not-a-token", `{"key":"ingress-bad","data":1}`, nil)
				wantChallenge(t, r, "invalid_token", `invalid_token`)
				in.wantNoRecord(t, tokA, "ingress-bad")
			})

			t.Run("the record lands on the token's device, not on a forged one", func(t *testing.T) {
				r := in.send(t, "POST", "/api/storage", tokA, `{"key":"ingress-forged","data":"mine"}`, forgedIdentity(deviceB))
				if r.Status != http.StatusCreated {
					t.Fatalf("POST with a token and forged identity headers: %d %s, want 201", r.Status, r.Body)
				}
				in.wantRecord(t, tokA, "ingress-forged", `"mine"`)
				in.wantNoRecord(t, tokB, "ingress-forged")
			})

			t.Run("a public route is served without a token, and without identity", func(t *testing.T) {
				r := in.send(t, "POST", "/api/storage", tokB, `{"key":"public/ingress-p","data":"B's"}`, nil)
				if r.Status != http.StatusCreated {
					t.Fatalf("POST as B: %d %s, want 201", r.Status, r.Body)
				}
				// No token, and B's device id forged: the request reaches
				// the backend (the public route) with no device at all, so
				// the backend itself refuses it. B's record stays B's.
				r = in.send(t, "GET", "/api/storage/public/ingress-p", "", "", forgedIdentity(deviceB))
				if r.Status != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") != "" {
					t.Fatalf("anonymous GET on the public route: %d (WWW-Authenticate %q) %s; want the backend's own 401, which has no challenge",
						r.Status, r.Header.Get("WWW-Authenticate"), r.Body)
				}
				wantBackendSaw(t, s.Backend, "GET", "/api/storage/public/ingress-p", "", http.StatusUnauthorized)
				// A token on a public route still names the caller.
				in.wantRecord(t, tokB, "public/ingress-p", `"B's"`)
				in.wantNoRecord(t, tokA, "public/ingress-p")
				// The rule is GET only: the same path by POST needs a token.
				r = in.send(t, "POST", "/api/storage/public/ingress-p", "", `{}`, nil)
				wantChallenge(t, r, "unauthorized", `Bearer realm=`)
			})

			t.Run("an admin route needs an admin session", func(t *testing.T) {
				r := in.send(t, "DELETE", "/api/storage/ingress-1", "", "", nil)
				wantChallenge(t, r, "unauthorized", `Bearer realm=`)
				r = in.send(t, "DELETE", "/api/storage/ingress-1", tokA, "", nil)
				wantForbidden(t, r)
				// The method and URI the proxy judges are the ingress's
				// word, never the client's.
				r = in.send(t, "DELETE", "/api/storage/ingress-1", tokA, "", http.Header{
					"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/api/storage/ingress-1"},
					"X-Original-Method": {"GET"}, "X-Original-URI": {"/api/storage/ingress-1"},
				})
				wantForbidden(t, r)
				in.wantRecord(t, tokA, "ingress-1", `{"n":1}`)
				r = in.send(t, "DELETE", "/api/storage/ingress-1", tokAdmin, "", nil)
				if r.Status != http.StatusNoContent {
					t.Fatalf("DELETE as admin: %d %s, want 204", r.Status, r.Body)
				}
				in.wantNoRecord(t, tokA, "ingress-1")
			})

			t.Run("a path read differently elsewhere is refused", func(t *testing.T) {
				for _, p := range []string{"/api/storage/a%2Fb", "/API/AUTH/session"} {
					r := in.send(t, "GET", p, tokA, "", nil)
					wantError(t, r, http.StatusBadRequest, "invalid_request")
				}
			})

			t.Run("a logged-out token is refused on the next request", func(t *testing.T) {
				tok := in.login(t, deviceA, "1111", "pin-1111")
				if r := in.send(t, "POST", "/api/storage", tok, `{"key":"ingress-out","data":1}`, nil); r.Status != http.StatusCreated {
					t.Fatalf("POST before logout: %d %s, want 201", r.Status, r.Body)
				}
				if r := in.send(t, "POST", "/api/auth/logout", tok, "", nil); r.Status != http.StatusNoContent {
					t.Fatalf("logout: %d %s, want 204", r.Status, r.Body)
				}
				r := in.send(t, "POST", "/api/storage", tok, `{"key":"ingress-out-2","data":1}`, nil)
				wantChallenge(t, r, "invalid_token", `invalid_token`)
				in.wantNoRecord(t, tokA, "ingress-out-2")
			})
		})
	}
}

// TestIngressIdentityHeaders puts a recording upstream behind each ingress
// to see exactly which identity headers arrive: the five the proxy's verify
// answer names, with its values, and none of the client's.
func TestIngressIdentityHeaders(t *testing.T) {
	t.Parallel()
	for _, kind := range ingressKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			up := newRecordingUpstream(t)
			s := newProxyStack(t, noUpstream, map[string]string{
				"PUBLIC_ROUTES": ingressPublicRoutes,
				"ADMIN_ROUTES":  ingressAdminRoutes,
			})
			s.AddUser("VR-INGRESS-H", "1111", "pin-1111", false)
			in := kind.start(t, s.Proxy.Addr, up.Listener.Addr().String())
			lb := login(t, s.Proxy, "VR-INGRESS-H", "1111", "pin-1111")
			sid := sessionID(t, s.Proxy, lb.Token)

			// What the proxy answers the ingress, asked directly.
			v := askVerify(t, s.Proxy, lb.Token, http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/api/things/1"}})
			if v.Status != http.StatusOK || len(v.Body) != 0 {
				t.Fatalf("verify: %d %q, want 200 without a body", v.Status, v.Body)
			}
			want := map[string]string{
				"X-Auth-User-Id":    lb.User.ID,
				"X-Auth-Username":   "1111",
				"X-Auth-Device-Id":  "VR-INGRESS-H",
				"X-Auth-Admin":      "false",
				"X-Auth-Session-Id": sid,
			}
			for _, h := range identityHeaderNames {
				if got := v.Header.Get(h); got != want[h] {
					t.Errorf("verify answers %s: %q, want %q", h, got, want[h])
				}
			}

			t.Run("a token: the five headers of the verify answer, nothing else", func(t *testing.T) {
				r := in.send(t, "GET", "/api/things/1", lb.Token, "", forgedIdentity("VR-FORGED"))
				if r.Status != http.StatusOK {
					t.Fatalf("GET through %s: %d %s, want the upstream's 200", kind.name, r.Status, r.Body)
				}
				got := identitySeen(up.lastRequest())
				if !equalMaps(got, want) {
					t.Errorf("upstream saw identity %v, want %v", got, want)
				}
				if a := up.lastRequest().Header.Values("Authorization"); len(a) > 0 {
					t.Errorf("upstream saw Authorization %q; the backend never gets the token", a)
				}
			})

			t.Run("a public route without a token: no identity header at all", func(t *testing.T) {
				r := in.send(t, "GET", "/api/storage/public/x", "", "", forgedIdentity("VR-FORGED"))
				if r.Status != http.StatusOK {
					t.Fatalf("anonymous GET on the public route through %s: %d %s, want the upstream's 200", kind.name, r.Status, r.Body)
				}
				if got := identitySeen(up.lastRequest()); len(got) > 0 {
					t.Errorf("upstream saw identity %v on an anonymous request; want none", got)
				}
			})

			t.Run("once the session is cached, the checks cost no database query", func(t *testing.T) {
				waitFor(t, 30*time.Second, "listener up", func() bool { return scrape(t, s.Proxy, "authsidecar_listener_up") == 1 })
				in.send(t, "GET", "/api/things/warm", lb.Token, "", nil)
				before, hits := settledQueries(t, s.Proxy), up.hits.Load()
				const n = 20
				for range n {
					if r := in.send(t, "GET", "/api/things/2", lb.Token, "", nil); r.Status != http.StatusOK {
						t.Fatalf("GET through %s: %d %s, want the upstream's 200", kind.name, r.Status, r.Body)
					}
				}
				if after := scrape(t, s.Proxy, dbQueries); after != before {
					t.Errorf("%d requests through %s made %v database queries, want 0", n, kind.name, after-before)
				}
				if got := up.hits.Load() - hits; got != n {
					t.Errorf("the upstream got %d of the %d requests", got, n)
				}
			})

			t.Run("the method the client used is the one judged", func(t *testing.T) {
				// nginx asks by GET whatever the client's method: the rule
				// is GET only, so a POST here must still need a token.
				hits := up.hits.Load()
				r := in.send(t, "POST", "/api/storage/public/x", "", `{}`, nil)
				wantChallenge(t, r, "unauthorized", `Bearer realm=`)
				if n := up.hits.Load(); n != hits {
					t.Errorf("the upstream got %d request(s) for a refused one", n-hits)
				}
			})

			// The verify answers the ingress acts on, each checked against
			// the API document with the others of the run.
			for _, c := range []struct {
				name   string
				token  string
				hdr    http.Header
				status int
			}{
				{"nginx's headers", lb.Token, http.Header{"X-Original-Method": {"DELETE"}, "X-Original-URI": {"/api/storage/k"}}, http.StatusForbidden},
				{"no token on a public route", "", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/api/storage/public/k"}}, http.StatusOK},
				{"no token", "", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/api/storage/k"}}, http.StatusUnauthorized},
				{"an ambiguous path", lb.Token, http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/api/storage/a%2Fb"}}, http.StatusBadRequest},
			} {
				r := askVerify(t, s.Proxy, c.token, c.hdr)
				if r.Status != c.status {
					t.Errorf("verify, %s: %d %s, want %d", c.name, r.Status, r.Body, c.status)
				}
				if c.status == http.StatusOK && len(identitySeen(&http.Request{Header: r.Header})) > 0 {
					t.Errorf("verify, %s: identity headers %v, want none", c.name, r.Header)
				}
			}
		})
	}
}

// forgedIdentity is a client's attempt to name itself: every identity
// header, the device id as device, in the proxy's spelling, in lower case
// and with underscores.
func forgedIdentity(device string) http.Header {
	h := http.Header{}
	for _, name := range identityHeaderNames {
		v := "forged"
		if name == "X-Auth-Device-Id" {
			v = device
		}
		h[name] = []string{v}
		h[strings.ToLower(name)] = []string{v}
		h[strings.ReplaceAll(name, "-", "_")] = []string{v}
	}
	return h
}

// isIdentityName reports whether a backend could read header name as one of
// the identity headers: in any case, with '_' for '-' (as CGI, WSGI and PHP
// do).
func isIdentityName(name string) bool {
	folded := strings.ReplaceAll(name, "_", "-")
	for _, h := range identityHeaderNames {
		if strings.EqualFold(folded, h) {
			return true
		}
	}
	return false
}

// identitySeen returns every identity header of r (in any spelling), by
// name, with its values joined.
func identitySeen(r *http.Request) map[string]string {
	got := map[string]string{}
	if r == nil {
		return got
	}
	for k, vs := range r.Header {
		if isIdentityName(k) {
			got[k] = strings.Join(vs, ", ")
		}
	}
	return got
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// askVerify asks the proxy's forward-auth endpoint directly, as an ingress
// does, and records the answer for the check against the API document.
func askVerify(t *testing.T, p *process, token string, hdr http.Header) response {
	t.Helper()
	req, err := http.NewRequest("GET", p.URL()+"/api/auth/verify", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	record(t, req, nil, resp, b)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// wantChallenge checks a 401 as a client sees it through the ingress: the
// JSON error with code, and a WWW-Authenticate challenge containing
// challenge.
func wantChallenge(t *testing.T, r response, code, challenge string) {
	t.Helper()
	wantError(t, r, http.StatusUnauthorized, code)
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("401 with Content-Type %q, want application/json", ct)
	}
	if c := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(c, "Bearer ") || !strings.Contains(c, challenge) {
		t.Errorf("401 with WWW-Authenticate %q, want a Bearer challenge with %s", c, challenge)
	}
}

// wantForbidden checks the 403 of an admin route for a regular session.
func wantForbidden(t *testing.T, r response) {
	t.Helper()
	wantError(t, r, http.StatusForbidden, "insufficient_scope")
	if c := r.Header.Get("WWW-Authenticate"); !strings.Contains(c, "insufficient_scope") {
		t.Errorf("403 with WWW-Authenticate %q, want insufficient_scope", c)
	}
}

// wantBackendSaw waits until the storage backend has logged the request
// it refused (it logs every refusal with the device it was given), so a
// test can tell that a request reached it and as whom.
func wantBackendSaw(t *testing.T, backend *process, method, path, device string, status int) {
	t.Helper()
	seen := func() bool {
		for _, line := range strings.Split(backend.Logs(), "\n") {
			var e struct {
				Msg    string `json:"msg"`
				Method string `json:"method"`
				Path   string `json:"path"`
				Device string `json:"device"`
				Status int    `json:"status"`
			}
			if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "request failed" &&
				e.Method == method && e.Path == path && e.Device == device && e.Status == status {
				return true
			}
		}
		return false
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("the backend never logged %s %s from device %q with %d:\n%s", method, path, device, status, backend.Logs()), seen)
}

// ingress is a running nginx or Caddy in front of the proxy.
type ingress struct {
	name string
	addr string // host:port it listens on
	dir  string // its configuration and logs
	cmd  *exec.Cmd
	done chan struct{}
	out  lockedBuffer
}

// lockedBuffer collects a child's output from two pipes at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// url is the ingress's URL for path.
func (in *ingress) url(path string) string { return "http://" + in.addr + path }

// send sends one request through the ingress (see send in security_test.go).
func (in *ingress) send(t *testing.T, method, path, token, body string, hdr http.Header) response {
	t.Helper()
	return send(t, nil, method, in.url(path), token, body, hdr)
}

// login logs in through the ingress and returns the token.
func (in *ingress) login(t *testing.T, device, username, password string) string {
	t.Helper()
	r := in.send(t, "POST", "/api/auth/login", "", loginJSON(device, username, password), nil)
	if r.Status != http.StatusOK {
		t.Fatalf("login %s/%s through %s: %d %s", device, username, in.name, r.Status, r.Body)
	}
	var lb loginBody
	r.JSON(t, &lb)
	return lb.Token
}

// wantRecord reads key back through the ingress as token's device.
func (in *ingress) wantRecord(t *testing.T, token, key, data string) {
	t.Helper()
	r := in.send(t, "GET", "/api/storage/"+key, token, "", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: %d %s, want 200", key, r.Status, r.Body)
	}
	var rec struct {
		Data json.RawMessage `json:"data"`
	}
	r.JSON(t, &rec)
	if string(rec.Data) != data {
		t.Fatalf("GET %s: data %s, want %s", key, rec.Data, data)
	}
}

// wantNoRecord checks that token's device has no record key.
func (in *ingress) wantNoRecord(t *testing.T, token, key string) {
	t.Helper()
	r := in.send(t, "GET", "/api/storage/"+key, token, "", nil)
	wantError(t, r, http.StatusNotFound, "not_found")
}

// renderExample reads an example of deploy/forward-auth and replaces its
// addresses (and, for nginx, its log path) with the test's. Each one must
// be there: an example that no longer names it would otherwise go
// untested.
func renderExample(t *testing.T, name string, replace map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(forwardAuthDir, name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for old, repl := range replace {
		if !strings.Contains(s, old) {
			t.Fatalf("%s no longer contains %q; update the test with the example", name, old)
		}
		s = strings.ReplaceAll(s, old, repl)
	}
	return s
}

// The addresses the examples are written with.
const (
	exampleProxy   = "127.0.0.1:8080"
	exampleBackend = "127.0.0.1:9000"
)

// startNginx runs deploy/forward-auth/nginx.conf in front of the proxy and
// backend, on a port of its own.
func startNginx(t *testing.T, proxyAddr, backendAddr string) *ingress {
	return runIngress(t, "nginx", "nginx-light", func(dir, addr string) ([]string, []string) {
		conf := renderExample(t, "nginx.conf", map[string]string{
			"listen 80;":                "listen " + addr + ";",
			exampleProxy:                proxyAddr,
			exampleBackend:              backendAddr,
			"/var/log/nginx/access.log": filepath.Join(dir, "access.log"),
		})
		file := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		// -e and -g keep nginx in the foreground, with its error log and
		// pid file ours, away from the system's nginx.
		return []string{"-p", dir + "/", "-c", file, "-e", "stderr",
			"-g", "daemon off; pid " + filepath.Join(dir, "nginx.pid") + ";"}, nil
	})
}

// startCaddy runs deploy/forward-auth/Caddyfile in front of the proxy and
// backend, on a port of its own.
func startCaddy(t *testing.T, proxyAddr, backendAddr string) *ingress {
	return runIngress(t, "caddy", "caddy", func(dir, addr string) ([]string, []string) {
		conf := renderExample(t, "Caddyfile", map[string]string{
			"auth.example.com {": "http://" + addr + " {",
			exampleProxy:         proxyAddr,
			exampleBackend:       backendAddr,
		})
		// No admin API: it would listen on the same port in every test.
		conf = "{\n\tadmin off\n}\n\n" + conf
		file := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		// Caddy keeps its state under HOME and the XDG directories.
		env := []string{"HOME=" + dir, "XDG_DATA_HOME=" + filepath.Join(dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config")}
		return []string{"run", "--config", file, "--adapter", "caddyfile"}, env
	})
}

// runIngress starts bin with the arguments prepare gives for a directory
// and a free address, and waits until requests reach the proxy through it.
// A port taken between choosing it and binding it is tried again.
func runIngress(t *testing.T, bin, pkg string, prepare func(dir, addr string) (args, env []string)) *ingress {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("%s is not installed; the ingress tests need the Debian package %s (make test installs it when run as root: scripts/ingress-tools.sh)", bin, pkg)
	}
	for attempt := 1; ; attempt++ {
		in := &ingress{name: bin, addr: freeAddr(t), dir: t.TempDir(), done: make(chan struct{})}
		args, env := prepare(in.dir, in.addr)
		in.cmd = exec.Command(path, args...)
		in.cmd.Dir = in.dir
		in.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
		in.cmd.Stdout, in.cmd.Stderr = &in.out, &in.out
		// Its own process group, so that its workers go with it.
		in.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := in.cmd.Start(); err != nil {
			t.Fatalf("%s: %v", bin, err)
		}
		go func() { _ = in.cmd.Wait(); close(in.done) }()
		t.Cleanup(func() {
			in.stop(t)
			if t.Failed() {
				t.Logf("%s output:\n%s", bin, in.out.String())
				if b, err := os.ReadFile(filepath.Join(in.dir, "access.log")); err == nil {
					t.Logf("%s access log:\n%s", bin, b)
				}
			}
		})
		err := in.waitReady()
		if err == nil {
			return in
		}
		in.stop(t)
		if attempt < 3 && strings.Contains(strings.ToLower(in.out.String()), "address already in use") {
			continue
		}
		t.Fatalf("%s: %v\n%s", bin, err, in.out.String())
	}
}

// waitReady polls the proxy's public keys through the ingress until they
// come back, which is also how a port that another program took would show.
func (in *ingress) waitReady() error {
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-in.done:
			return errors.New("exited before serving")
		default:
		}
		resp, err := client.Get(in.url("/.well-known/jwks.json"))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer through it after 60s (last: %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the ingress and its workers: SIGTERM, then SIGKILL to its
// process group if it does not go.
func (in *ingress) stop(t *testing.T) {
	select {
	case <-in.done:
		return
	default:
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-in.cmd.Process.Pid, syscall.SIGKILL)
		<-in.done
		t.Errorf("%s did not exit within 30s of SIGTERM", in.name)
	}
}

// freeAddr returns a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
