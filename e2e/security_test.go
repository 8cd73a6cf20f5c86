package e2e

// The attacks of the hardening issue, each refused in a test of its own
// against the real binaries. Lockout tests are in security_lockout_test.go,
// token and key tests in security_token_test.go; this file has the shared
// helpers and the header, path, limit, flood and secret tests.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recordingUpstream is a backend that records what reached it, for the
// tests that must prove nothing did (or exactly what did).
type recordingUpstream struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	last *http.Request
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	t.Helper()
	u := &recordingUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.last = r.Clone(context.Background())
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"upstream":true}`)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *recordingUpstream) lastRequest() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

// newProxyStack starts only a proxy, on a fresh schema, in front of
// upstream (a recording upstream, or an address nothing listens on for tests
// that never forward). It saves starting a storage-backend where a test does
// not need one.
func newProxyStack(t *testing.T, upstream string, extra map[string]string) *stack {
	t.Helper()
	s := &stack{t: t, DB: databaseURL(t)}
	s.proxyEnv = map[string]string{
		"DATABASE_URL": s.DB,
		"UPSTREAM_URL": upstream,
		"METRICS_ADDR": "127.0.0.1:0",
		"LOG_LEVEL":    "debug",
	}
	for k, v := range extra {
		s.proxyEnv[k] = v
	}
	s.Proxy = s.StartProxy()
	return s
}

// noUpstream is an UPSTREAM_URL for proxies whose tests never forward.
const noUpstream = "http://127.0.0.1:9"

// send is do with extra headers set as written (not canonicalised) and a
// client of the caller's choice (nil: a fresh transport per call).
func send(t *testing.T, client *http.Client, method, u, token, body string, hdr http.Header) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if client == nil {
		client = &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
		defer client.CloseIdleConnections()
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// loginJSON is a login body.
func loginJSON(device, username, password string) string {
	b, _ := json.Marshal(map[string]string{"deviceId": device, "username": username, "password": password})
	return string(b)
}

// raw writes req to addr byte for byte, so that no client cleans, escapes or
// refuses the request line, and reads one response.
func raw(t *testing.T, addr, req string) response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// Written from a goroutine: a server that answers before reading all
	// of an over-sized request must not leave us blocked in Write.
	go func() { _, _ = io.WriteString(conn, req) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%.80q: %v", req, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// TestClientCannotImpersonateAnotherDevice: whatever identity header a
// client sends, in any spelling and even listed in Connection, the real
// storage-backend sees the device of the token, so one device can neither
// read nor plant another's records.
func TestClientCannotImpersonateAnotherDevice(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser("VR-A", "1111", "1111", false)
	s.AddUser("VR-OTHER", "1111", "1111", false)
	a := login(t, s.Proxy, "VR-A", "1111", "1111")
	other := login(t, s.Proxy, "VR-OTHER", "1111", "1111")
	base := s.Proxy.URL()
	if r := do(t, "POST", base+"/api/storage", other.Token, map[string]any{"key": "secret", "data": "other's"}); r.Status != http.StatusCreated {
		t.Fatalf("store: %d %s", r.Status, r.Body)
	}
	if r := do(t, "POST", base+"/api/storage", a.Token, map[string]any{"key": "mine", "data": "a's"}); r.Status != http.StatusCreated {
		t.Fatalf("store: %d %s", r.Status, r.Body)
	}

	for i, hdr := range []http.Header{
		{"X-Auth-Device-Id": {"VR-OTHER"}},
		{"x-auth-device-id": {"VR-OTHER"}},
		{"X-AUTH-DEVICE-ID": {"VR-OTHER"}},
		{"X_Auth_Device_Id": {"VR-OTHER"}},
		{"X-Auth-Device-Id": {"VR-OTHER"}, "X-Auth-Admin": {"true"}, "X-Auth-Username": {"1111"}},
		// Listing our header as hop-by-hop must not remove the proxy's.
		{"X-Auth-Device-Id": {"VR-OTHER"}, "Connection": {"X-Auth-Device-Id"}},
		{"Connection": {"X-Auth-Device-Id, X-Auth-User-Id"}},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			r := send(t, nil, "GET", base+"/api/storage/secret", a.Token, "", hdr)
			if r.Status == http.StatusOK {
				t.Fatalf("%v read another device's record: %s", hdr, r.Body)
			}
			wantError(t, r, http.StatusNotFound, "not_found")
			// The proxy's own identity still arrives: the caller reads its
			// own record.
			if r := send(t, nil, "GET", base+"/api/storage/mine", a.Token, "", hdr); r.Status != http.StatusOK {
				t.Fatalf("%v: own record: %d %s", hdr, r.Status, r.Body)
			}
			key := fmt.Sprintf("planted-%d", i)
			if r := send(t, nil, "POST", base+"/api/storage", a.Token, `{"key":"`+key+`","data":1}`, hdr); r.Status != http.StatusCreated {
				t.Fatalf("%v: store: %d %s", hdr, r.Status, r.Body)
			}
			wantError(t, do(t, "GET", base+"/api/storage/"+key, other.Token, nil), http.StatusNotFound, "not_found")
		})
	}
}

// TestForwardedHeadersAreTheProxys: behind the real proxy, the backend gets
// the proxy's X-Forwarded-* (not the client's claim, not appended to it),
// no Authorization, no identity header of the client's and no h2c upgrade.
func TestForwardedHeadersAreTheProxys(t *testing.T) {
	t.Parallel()
	up := newRecordingUpstream(t)
	s := newProxyStack(t, up.URL, nil)
	s.AddUser("VR-A", "1111", "1111", false)
	tok := login(t, s.Proxy, "VR-A", "1111", "1111").Token

	r := raw(t, s.Proxy.Addr, "GET /api/storage HTTP/1.1\r\nHost: "+s.Proxy.Addr+"\r\n"+
		"Authorization: Bearer "+tok+"\r\n"+
		"X-Forwarded-For: 10.9.9.9\r\nX_Forwarded_For: 10.8.8.8\r\nX-Forwarded-Proto: https\r\n"+
		"X-Forwarded-Host: evil.example\r\nX-Forwarded-Prefix: /admin\r\nForwarded: for=10.7.7.7\r\nX-Real-IP: 10.6.6.6\r\n"+
		"X_Auth_User_Id: evil\r\nx-auth-admin: true\r\nX-Auth-Extra: 1\r\n"+
		"Connection: Upgrade, HTTP2-Settings, X-Auth-Device-Id\r\nUpgrade: websocket, h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"+
		"Connection: close\r\n\r\n")
	if r.Status != http.StatusOK || up.hits.Load() != 1 {
		t.Fatalf("status %d, upstream hits %d: %s", r.Status, up.hits.Load(), r.Body)
	}
	got := up.lastRequest().Header
	want := map[string]string{
		"X-Forwarded-For":   "127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  s.Proxy.Addr,
		"X-Auth-Device-Id":  "VR-A",
		"X-Auth-Admin":      "false",
		"X-Auth-Username":   "1111",
	}
	for k, v := range want {
		if vs := got.Values(k); len(vs) != 1 || vs[0] != v {
			t.Errorf("%s = %q, want only %q", k, vs, v)
		}
	}
	for k, vs := range got {
		n := strings.ToLower(strings.ReplaceAll(k, "_", "-"))
		switch {
		case n == "authorization":
			t.Errorf("the token reached the backend")
		case n == "upgrade" || n == "http2-settings":
			t.Errorf("h2c upgrade forwarded: %s: %q", k, vs)
		case n == "forwarded" || n == "x-real-ip":
			t.Errorf("client's %s reached the backend: %q", k, vs)
		case strings.HasPrefix(n, "x-forwarded-") && want[k] == "":
			t.Errorf("client's %s reached the backend: %q", k, vs)
		case strings.HasPrefix(n, "x-auth-") && k != "X-Auth-User-Id" && k != "X-Auth-Session-Id" && want[k] == "":
			t.Errorf("client's %s reached the backend: %q", k, vs)
		}
	}
}

// pathSpellings are request targets that a router, a path cleaner or a
// backend could resolve to a protected route, or to a public one.
var pathSpellings = []string{
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
	"/metrics",
}

// TestNoPathSpellingReachesTheBackendWithoutAToken sends every spelling as
// raw bytes to the real proxy, without a token: the backend is never
// reached. Only the proxy's own routes answer without a token.
func TestNoPathSpellingReachesTheBackendWithoutAToken(t *testing.T) {
	t.Parallel()
	up := newRecordingUpstream(t)
	s := newProxyStack(t, up.URL, nil)
	addr := s.Proxy.Addr
	targets := append([]string{"http://" + addr + "/healthz/../api/storage", "http://evil.example/api/storage"}, pathSpellings...)
	for _, target := range targets {
		for _, method := range []string{"GET", "POST", "DELETE"} {
			r := raw(t, addr, method+" "+target+" HTTP/1.1\r\nHost: "+addr+"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			if r.Status < 300 || r.Status >= 500 {
				t.Errorf("%s %s without a token: %d %s", method, target, r.Status, r.Body)
			}
		}
	}
	if n := up.hits.Load(); n != 0 {
		t.Fatalf("the backend was reached %d times without a token", n)
	}
	for _, p := range []string{"/healthz", "/readyz", "/.well-known/jwks.json"} {
		if r := raw(t, addr, "GET "+p+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); r.Status != http.StatusOK {
			t.Errorf("GET %s: %d %s", p, r.Status, r.Body)
		}
	}
	if n := up.hits.Load(); n != 0 {
		t.Fatalf("a public route was forwarded")
	}
}

// TestOversizedHeaderIs431: headers beyond the server's MaxHeaderBytes are
// refused before any handler runs, in bounded memory.
func TestOversizedHeaderIs431(t *testing.T) {
	t.Parallel()
	s := newProxyStack(t, noUpstream, nil)
	for _, h := range []string{"X-Pad: " + strings.Repeat("p", 100<<10), strings.Repeat("X-Pad: 12345678\r\n", 8<<10) + "X-End: 1"} {
		r := raw(t, s.Proxy.Addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n"+h+"\r\n\r\n")
		if r.Status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("%d bytes of headers: %d %s", len(h), r.Status, r.Body)
		}
	}
	// A normal request on the same server still works.
	if r := raw(t, s.Proxy.Addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); r.Status != http.StatusOK {
		t.Fatalf("healthz: %d", r.Status)
	}
}

// TestOversizedLoginBodyIsRefused: a login body over 4 KiB is refused even
// when it holds the right credentials; one of exactly 4 KiB logs in.
func TestOversizedLoginBodyIsRefused(t *testing.T) {
	t.Parallel()
	s := newProxyStack(t, noUpstream, nil)
	s.AddUser(device, "1111", "1111", false)
	creds := loginJSON(device, "1111", "1111")
	fits := creds + strings.Repeat(" ", 4096-len(creds))
	if r := send(t, nil, "POST", s.Proxy.URL()+"/api/auth/login", "", fits, nil); r.Status != http.StatusOK {
		t.Fatalf("4096 bytes: %d %s", r.Status, r.Body)
	}
	for _, body := range []string{fits + " ", creds + strings.Repeat(" ", 1<<20)} {
		r := send(t, nil, "POST", s.Proxy.URL()+"/api/auth/login", "", body, nil)
		if r.Status != http.StatusBadRequest && r.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("%d bytes: %d %s", len(body), r.Status, r.Body)
		}
		var e struct{ Error, Message string }
		r.JSON(t, &e)
		if e.Error == "" || e.Message == "" {
			t.Fatalf("error body %s", r.Body)
		}
	}
}

// TestOversizedStorageBodyIs413ThroughTheProxy: the backend's
// MAX_BODY_BYTES holds with the proxy in between, and its 413 comes back to
// the client unchanged.
func TestOversizedStorageBodyIs413ThroughTheProxy(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "1111", "1111", false)
	tok := login(t, s.Proxy, device, "1111", "1111").Token
	const limit = 1 << 20 // the backend's default MAX_BODY_BYTES
	record := func(size int) string {
		head, tail := `{"key":"big","data":"`, `"}`
		return head + strings.Repeat("x", size-len(head)-len(tail)) + tail
	}
	if r := send(t, nil, "POST", s.Proxy.URL()+"/api/storage", tok, record(limit), nil); r.Status != http.StatusCreated {
		t.Fatalf("a body of exactly MAX_BODY_BYTES: %d %.200s", r.Status, r.Body)
	}
	wantError(t, send(t, nil, "POST", s.Proxy.URL()+"/api/storage", tok, record(limit+1), nil),
		http.StatusRequestEntityTooLarge, "body_too_large")
}

// TestSlowHalfOpenConnectionsDoNotBlockOthers: 200 connections that send
// part of a request line and stall (slowloris) take nothing from a normal
// request on a fresh connection. The client's 5 s timeout only detects a
// hang; it is not a latency bound.
func TestSlowHalfOpenConnectionsDoNotBlockOthers(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "1111", "1111", false)
	tok := login(t, s.Proxy, device, "1111", "1111").Token
	for i := 0; i < 200; i++ {
		conn, err := net.DialTimeout("tcp", s.Proxy.Addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		t.Cleanup(func() { conn.Close() })
		partial := []string{"GET /api/stor", "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Le", "G"}[i%3]
		if _, err := io.WriteString(conn, partial); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for _, c := range []struct{ method, path, token, body string }{
		{"GET", "/healthz", "", ""},
		{"POST", "/api/storage", tok, `{"key":"k","data":1}`},
		{"GET", "/api/storage/k", tok, ""},
		{"POST", "/api/auth/login", "", loginJSON(device, "1111", "1111")},
	} {
		r := send(t, client, c.method, s.Proxy.URL()+c.path, c.token, c.body, nil)
		if r.Status/100 != 2 {
			t.Fatalf("%s %s with 200 stalled connections open: %d %s", c.method, c.path, r.Status, r.Body)
		}
	}
}

// peakRSS returns the high-water mark of the resident memory of a process
// and its children in bytes (Linux), or 0 where it cannot be read.
func peakRSS(p *process) int64 {
	pid := p.cmd.Process.Pid
	total := vmHWM(pid)
	for _, child := range childPIDs(pid) {
		total += vmHWM(child)
	}
	return total
}

// vmHWM is the peak resident memory of process pid, or 0 if unknown.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// childPIDs lists the processes whose parent is pid: the proxy's password
// hashing workers, whose memory is the proxy's too.
func childPIDs(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var children []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(child); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			children = append(children, child)
		}
	}
	return children
}

// statFields is /proc/pid/stat after "pid (comm) ": state, ppid, …; nil if
// it cannot be read. comm may hold spaces and parentheses, hence the last ')'.
func statFields(pid int) []string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(stat), ')')
	return strings.Fields(string(stat[i+1:]))
}

// TestLoginFloodDoesNotStarveProxiedTraffic: while many clients hammer the
// login route of one proxy (each with an account of its own, so every login
// costs a password hash), proxied requests with a valid token keep
// succeeding, logins only ever get 200/401/429/503, and the proxy's memory
// (with its hashing workers') stays within a few hashes' worth: the number
// of hashes at once is bounded
// (each argon2id hash holds 19 MiB; unbounded, this flood would hold
// gigabytes).
func TestLoginFloodDoesNotStarveProxiedTraffic(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "1111", "1111", false)
	s.AddUser(device, "2222", "2222", false)
	tok := login(t, s.Proxy, device, "1111", "1111").Token
	if r := do(t, "POST", s.Proxy.URL()+"/api/storage", tok, map[string]any{"key": "k", "data": 1}); r.Status != http.StatusCreated {
		t.Fatalf("store: %d %s", r.Status, r.Body)
	}

	flooders := max(64, 8*runtime.NumCPU())
	floodClient := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: flooders, MaxConnsPerHost: flooders},
		Timeout:   30 * time.Second,
	}
	defer floodClient.CloseIdleConnections()
	// The flood lasts until enough logins were answered after a password
	// check (a 200 or a 401: the rest were refused before hashing) and
	// enough proxied requests went through it, however slow the machine;
	// a minute without that fails the test.
	const wantChecked, wantProxied = 16, 50
	ctx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
		errs     []error
		checked  atomic.Int64
	)
	for i := 0; i < flooders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				body := loginJSON(device, randomName("flood-"), "0000")
				if i%8 == 0 {
					body = loginJSON(device, "2222", "2222")
				}
				req, _ := http.NewRequest("POST", s.Proxy.URL()+"/api/auth/login", strings.NewReader(body))
				resp, err := floodClient.Do(req)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					statuses[resp.StatusCode]++
					if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
						checked.Add(1)
					}
				}
				mu.Unlock()
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}

	proxied := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer proxied.CloseIdleConnections()
	n := 0
	for ctx.Err() == nil {
		r := send(t, proxied, "GET", s.Proxy.URL()+"/api/storage/k", tok, "", nil)
		if r.Status != http.StatusOK {
			t.Fatalf("proxied request %d during the login flood: %d %s", n, r.Status, r.Body)
		}
		n++
		if n >= wantProxied && checked.Load() >= wantChecked {
			stop()
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d logins failed without an answer, e.g. %v", len(errs), errs[0])
	}
	total := 0
	for status, c := range statuses {
		total += c
		switch status {
		case http.StatusOK, http.StatusUnauthorized, http.StatusTooManyRequests, http.StatusServiceUnavailable:
		default:
			t.Errorf("%d logins answered %d", c, status)
		}
	}
	t.Logf("%d proxied requests and %d logins (%v) in the flood", n, total, statuses)
	if n < wantProxied || checked.Load() < wantChecked {
		t.Fatalf("the flood did not run in a minute: %d proxied (want %d), logins %v (want %d checked)", n, wantProxied, statuses, wantChecked)
	}
	const hashMemory = 19 << 20
	// A few hashes per core, plus the rest of the process; measured at
	// about 115 MiB on 2 cores bounded, over 500 MiB unbounded.
	limit := int64(runtime.NumCPU())*2*hashMemory + 160<<20
	if rss := peakRSS(s.Proxy); rss > limit {
		t.Fatalf("the proxy's memory and its workers' peaked at %d MiB during %d concurrent logins (limit %d MiB): hashing is not bounded",
			rss>>20, flooders, limit>>20)
	} else if rss > 0 {
		t.Logf("peak RSS %d MiB (%d hash workers)", rss>>20, len(childPIDs(s.Proxy.cmd.Process.Pid)))
	}
}

// TestSecretsStayOutOfLogsAndErrorBodies: after a login, proxied requests,
// a refresh, a wrong password, a tampered token and a logout, neither
// program's log holds a token, a password, the word Bearer or the signing
// key, and no error body holds a token.
func TestSecretsStayOutOfLogsAndErrorBodies(t *testing.T) {
	t.Parallel()
	keyFile, keyPEM := writeKeyFile(t, newKey(t))
	s := newStack(t, map[string]string{"SIGNING_KEY_FILE": keyFile})
	const pin, wrongPin = "pin-Zq81x", "pin-Wr0ng7"
	s.AddUser(device, "1111", pin, false)
	base := s.Proxy.URL()

	tok := login(t, s.Proxy, device, "1111", pin).Token
	if r := do(t, "POST", base+"/api/storage", tok, map[string]any{"key": "k", "data": 1}); r.Status != http.StatusCreated {
		t.Fatalf("store: %d %s", r.Status, r.Body)
	}
	rr := refresh(t, s.Proxy, tok)
	if rr.Status != http.StatusOK {
		t.Fatalf("refresh: %d %s", rr.Status, rr.Body)
	}
	var lb loginBody
	rr.JSON(t, &lb)
	tok2 := lb.Token
	tokens := []string{tok, tok2}

	var bodies []response
	bodies = append(bodies, do(t, "POST", base+"/api/auth/login", "", map[string]string{"deviceId": device, "username": "1111", "password": wrongPin}))
	parts := strings.Split(tok2, ".")
	tampered := parts[0] + "." + parts[1] + "x." + parts[2]
	bodies = append(bodies,
		do(t, "GET", base+"/api/storage/k", tampered, nil),
		do(t, "GET", base+"/api/storage/k", parts[0]+"."+parts[1]+".", nil),
		do(t, "GET", base+"/api/storage/nope", tok2, nil),
		send(t, nil, "GET", base+"/api/storage/k", "", "", http.Header{"Authorization": {"Basic " + tok2}}),
	)
	if r := do(t, "POST", base+"/api/auth/logout", tok2, nil); r.Status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	bodies = append(bodies, do(t, "GET", base+"/api/storage/k", tok2, nil), refresh(t, s.Proxy, tok2))

	for _, r := range bodies {
		if r.Status < 400 {
			t.Fatalf("expected a refusal, got %d %s", r.Status, r.Body)
		}
		for _, tk := range append(tokens, tampered) {
			for _, part := range strings.Split(tk, ".")[1:] {
				if strings.Contains(string(r.Body), part) {
					t.Errorf("error body %s quotes a token", r.Body)
				}
			}
		}
	}

	secrets := map[string]string{"a password": pin, "a wrong password": wrongPin, "the word Bearer": "Bearer"}
	for i, tk := range append(tokens, tampered) {
		secrets[fmt.Sprintf("token %d", i)] = tk
		secrets[fmt.Sprintf("token %d's signature", i)] = strings.Split(tk, ".")[2]
		secrets[fmt.Sprintf("token %d's claims", i)] = strings.Split(tk, ".")[1]
	}
	for i, line := range strings.Split(keyPEM, "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			secrets[fmt.Sprintf("line %d of the key file", i+1)] = line
		}
	}
	// Stop both so that every line is flushed.
	s.Proxy.Stop()
	s.Backend.Stop()
	for _, p := range []*process{s.Proxy, s.Backend} {
		logs := p.Logs()
		if !strings.Contains(logs, "login") && p == s.Proxy {
			t.Fatalf("the proxy's log has no login line; is it being captured?\n%s", logs)
		}
		for what, secret := range secrets {
			if strings.Contains(logs, secret) {
				t.Errorf("%s's log contains %s", p.name, what)
			}
		}
	}
}
