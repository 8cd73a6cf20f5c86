package e2e

import (
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const device = "VR-DEVICE-002"

// TestHeadsetFlow is the path a headset takes: log in, store a record
// (201), store it again (200), read it back.
func TestHeadsetFlow(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "1111", "1111", false)

	lb := login(t, s.Proxy, device, "1111", "1111")
	if lb.Token == "" || lb.User.Username != "1111" || lb.User.DeviceID != device || lb.User.IsAdmin || lb.User.ID == "" {
		t.Fatalf("login body: %+v", lb)
	}
	if d := time.Until(lb.ExpiresAt); d < 23*time.Hour || d > 24*time.Hour+time.Minute {
		t.Fatalf("expiresAt %s is not 24h from now", lb.ExpiresAt)
	}

	rec := map[string]any{"key": "test-123", "data": map[string]any{"score": 42}}
	if r := do(t, "POST", s.Proxy.URL()+"/api/storage", lb.Token, rec); r.Status != http.StatusCreated {
		t.Fatalf("first store: %d %s", r.Status, r.Body)
	}
	rec["data"] = map[string]any{"score": 43}
	if r := do(t, "POST", s.Proxy.URL()+"/api/storage", lb.Token, rec); r.Status != http.StatusOK {
		t.Fatalf("second store of the same key: %d %s", r.Status, r.Body)
	}
	r := do(t, "GET", s.Proxy.URL()+"/api/storage/test-123", lb.Token, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("read back: %d %s", r.Status, r.Body)
	}
	var got struct {
		Key  string         `json:"key"`
		Data map[string]any `json:"data"`
	}
	r.JSON(t, &got)
	if got.Key != "test-123" || got.Data["score"] != float64(43) {
		t.Fatalf("read back %s", r.Body)
	}
}

// TestTokenSurvivesProxyRestart is why the product exists: a restart of the
// proxy does not log anyone out.
func TestTokenSurvivesProxyRestart(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	if r := do(t, "POST", s.Proxy.URL()+"/api/storage", lb.Token, map[string]any{"key": "before", "data": 1}); r.Status != http.StatusCreated {
		t.Fatalf("store before restart: %d %s", r.Status, r.Body)
	}

	s.Proxy.Stop()
	if code := s.Proxy.ExitCode(); code != 0 {
		t.Fatalf("proxy exited %d on SIGTERM", code)
	}
	restarted := s.StartProxy()

	if r := do(t, "POST", restarted.URL()+"/api/storage", lb.Token, map[string]any{"key": "after", "data": 2}); r.Status != http.StatusCreated {
		t.Fatalf("store after restart with the same token: %d %s", r.Status, r.Body)
	}
}

func TestWrongPasswordIs401(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "1111", "1111", false)
	wrong := do(t, "POST", s.Proxy.URL()+"/api/auth/login", "", map[string]string{"deviceId": device, "username": "1111", "password": "1112"})
	wantError(t, wrong, http.StatusUnauthorized, "invalid_credentials")
	// Unknown user and unknown device are indistinguishable from it.
	for _, body := range []map[string]string{
		{"deviceId": device, "username": "2222", "password": "1111"},
		{"deviceId": "VR-DEVICE-404", "username": "1111", "password": "1111"},
	} {
		r := do(t, "POST", s.Proxy.URL()+"/api/auth/login", "", body)
		if r.Status != wrong.Status || string(r.Body) != string(wrong.Body) {
			t.Fatalf("%v: %d %s differs from wrong password's %d %s", body, r.Status, r.Body, wrong.Status, wrong.Body)
		}
	}
}

func TestMalformedLoginIs400(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	for name, body := range map[string]string{
		"not json":         "deviceId=1",
		"missing password": `{"deviceId":"d","username":"u"}`,
		"empty username":   `{"deviceId":"d","username":"","password":"p"}`,
		"trailing data":    `{"deviceId":"d","username":"u","password":"p"} {}`,
		"too large":        `{"deviceId":"d","username":"u","password":"` + strings.Repeat("p", 5000) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			wantError(t, do(t, "POST", s.Proxy.URL()+"/api/auth/login", "", body), http.StatusBadRequest, "invalid_request")
		})
	}
}

func TestNoTokenIs401WithChallenge(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	r := do(t, "POST", s.Proxy.URL()+"/api/storage", "", map[string]any{"key": "k", "data": 1})
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	if h := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer realm=") {
		t.Fatalf("WWW-Authenticate %q", h)
	}
}

func TestGarbageTokenIs401(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	for _, tok := range []string{"garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzaWQiOiJ4In0."} {
		r := do(t, "GET", s.Proxy.URL()+"/api/storage/k", tok, nil)
		wantError(t, r, http.StatusUnauthorized, "invalid_token")
		if h := r.Header.Get("WWW-Authenticate"); !strings.Contains(h, `error="invalid_token"`) {
			t.Fatalf("WWW-Authenticate %q", h)
		}
	}
}

// TestExpiredTokenIsRefusedAndItsRowDeleted runs with TOKEN_TTL=2s.
func TestExpiredTokenIsRefusedAndItsRowDeleted(t *testing.T) {
	t.Parallel()
	s := newStack(t, map[string]string{"TOKEN_TTL": "2s"})
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	r := do(t, "GET", s.Proxy.URL()+"/api/auth/session", lb.Token, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("fresh token: %d %s", r.Status, r.Body)
	}
	var sess struct {
		SessionID string `json:"sessionId"`
	}
	r.JSON(t, &sess)
	sid := sess.SessionID

	time.Sleep(time.Until(lb.ExpiresAt) + 200*time.Millisecond)
	wantError(t, do(t, "POST", s.Proxy.URL()+"/api/storage", lb.Token, map[string]any{"key": "k", "data": 1}),
		http.StatusUnauthorized, "invalid_token")

	// Met after its expiry, the session's row is deleted at once.
	var n int
	query(t, s.DB, "SELECT count(*) FROM sessions WHERE id = $1", []any{sid}, &n)
	if n != 0 {
		t.Fatalf("expired session row still there")
	}
}

// TestDeviceCannotReadAnothersRecord: records belong to a device.
func TestDeviceCannotReadAnothersRecord(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser("VR-A", "1111", "1111", false)
	s.AddUser("VR-B", "1111", "1111", false)
	a := login(t, s.Proxy, "VR-A", "1111", "1111")
	b := login(t, s.Proxy, "VR-B", "1111", "1111")
	if r := do(t, "POST", s.Proxy.URL()+"/api/storage", a.Token, map[string]any{"key": "secret", "data": "a's"}); r.Status != http.StatusCreated {
		t.Fatalf("store: %d %s", r.Status, r.Body)
	}
	wantError(t, do(t, "GET", s.Proxy.URL()+"/api/storage/secret", b.Token, nil), http.StatusNotFound, "not_found")
	if r := do(t, "GET", s.Proxy.URL()+"/api/storage/secret", a.Token, nil); r.Status != http.StatusOK {
		t.Fatalf("owner read: %d %s", r.Status, r.Body)
	}
}

// TestBadSettingExits2: a malformed setting stops either program before it
// listens, with exit code 2 and one line naming the variable.
func TestBadSettingExits2(t *testing.T) {
	t.Parallel()
	db := databaseURL(t)
	cases := []struct {
		bin, name, value string
	}{
		{proxyBin, "TOKEN_TTL", "24x"},
		{proxyBin, "UPSTREAM_URL", "localhost:9000"},
		{proxyBin, "SIGNING_KEY_FILE", "/nonexistent/key.pem"},
		{proxyBin, "LOG_LEVEL", "loud"},
		{backendBin, "MAX_BODY_BYTES", "lots"},
		{backendBin, "LOG_LEVEL", "loud"},
	}
	for _, c := range cases {
		t.Run(c.name+"="+c.value, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(c.bin)
			cmd.Env = env(map[string]string{"DATABASE_URL": db, "LISTEN_ADDR": "127.0.0.1:0", c.name: c.value})
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != 2 {
				t.Fatalf("exit %d, want 2: %s", code, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], c.name) {
				t.Fatalf("want one line naming %s, got %q", c.name, out)
			}
		})
	}
}
