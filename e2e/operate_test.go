package e2e

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestGracefulDrain: on SIGTERM the proxy turns /readyz to 503 at once,
// lets a slow request that started before finish with 200, and exits 0.
func TestGracefulDrain(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	var release atomic.Bool
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		for !release.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("done"))
	}))
	t.Cleanup(slow.Close)
	s := newStack(t, map[string]string{"UPSTREAM_URL": slow.URL, "DRAIN_DELAY": "1s"})
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")

	done := make(chan response, 1)
	go func() { done <- do(t, "GET", s.Proxy.URL()+"/slow", lb.Token, nil) }()
	<-started

	if err := s.Proxy.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "readyz did not turn 503 after SIGTERM", func() bool {
		return do(t, "GET", s.Proxy.URL()+"/readyz", "", nil).Status == http.StatusServiceUnavailable
	})
	release.Store(true)
	if r := <-done; r.Status != http.StatusOK || string(r.Body) != "done" {
		t.Fatalf("in-flight request: %d %s", r.Status, r.Body)
	}
	exited := make(chan int, 1)
	go func() { exited <- s.Proxy.ExitCode() }()
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("exit code %d after SIGTERM, want 0", code)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("the proxy did not exit within 25 s of SIGTERM")
	}
	if !strings.Contains(s.Proxy.Logs(), `"msg":"stopped"`) {
		t.Fatalf("no clean stop in the log:\n%s", s.Proxy.Logs())
	}
}

// TestMetricsAreScraped: the metrics an operator alerts on are served on
// METRICS_ADDR and move with what happens; the public port never serves
// them.
func TestMetricsAreScraped(t *testing.T) {
	t.Parallel()
	s := newStack(t, map[string]string{"LOGIN_MAX_FAILURES": "2", "LOGIN_LOCKOUT": "1m"})
	s.AddUser(device, "1111", "1111", false)
	s.AddUser(device, "2222", "2222", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	do(t, "GET", s.Proxy.URL()+"/api/storage/x", lb.Token, nil)
	do(t, "GET", s.Proxy.URL()+"/api/storage/x", lb.Token, nil)
	for range 3 {
		do(t, "POST", s.Proxy.URL()+"/api/auth/login", "", map[string]string{"deviceId": device, "username": "2222", "password": "0000"})
	}
	r := refresh(t, s.Proxy, lb.Token)
	var fresh loginBody
	r.JSON(t, &fresh)
	do(t, "POST", s.Proxy.URL()+"/api/auth/logout", fresh.Token, nil)

	for metric, min := range map[string]float64{
		`authsidecar_logins_total{result="success"}`:                     1,
		`authsidecar_logins_total{result="invalid_credentials"}`:         2,
		`authsidecar_logins_total{result="locked_out"}`:                  1,
		`authsidecar_lockouts_total`:                                     1,
		`authsidecar_sessions_total{event="created"}`:                    1,
		`authsidecar_sessions_total{event="refreshed"}`:                  1,
		`authsidecar_sessions_total{event="revoked"}`:                    1,
		`authsidecar_cache_requests_total{cache="session",result="hit"}`: 1,
		`authsidecar_cache_requests_total{cache="token",result="miss"}`:  1,
		`authsidecar_listener_up`:                                        1,
		`authsidecar_revocation_notifications_total`:                     1,
		`authsidecar_db_query_duration_seconds_count`:                    1,
		`authsidecar_upstream_duration_seconds_count{code="404"}`:        1,
	} {
		if metric == `authsidecar_revocation_notifications_total` {
			waitFor(t, 3*time.Second, metric, func() bool { return scrape(t, s.Proxy, metric) >= min })
			continue
		}
		if got := scrape(t, s.Proxy, metric); got < min {
			t.Errorf("%s = %v, want ≥ %v", metric, got, min)
		}
	}
	// sessions_live is counted in the background, at start (no session
	// yet) and then every minute, never by a scrape.
	waitFor(t, 10*time.Second, "authsidecar_sessions_live counted", func() bool {
		return strings.Contains(scrapeText(t, s.Proxy), "\nauthsidecar_sessions_live 0\n")
	})

	pub := do(t, "GET", s.Proxy.URL()+"/metrics", "", nil)
	if pub.Status != http.StatusUnauthorized || strings.Contains(string(pub.Body), "authsidecar_") {
		t.Fatalf("/metrics on the public port: %d %s", pub.Status, pub.Body)
	}
}
