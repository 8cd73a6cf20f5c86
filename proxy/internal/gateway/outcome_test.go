package gateway_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// scrape returns the gateway's metrics in the Prometheus text format.
func (e *env) scrape() string {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// TestRequestsAreCountedByOutcome: every request on the proxy's port is
// counted once, by what became of it (forwarded, answered by the proxy's
// own route, or the error code the client got) and the status sent.
func TestRequestsAreCountedByOutcome(t *testing.T) {
	t.Parallel()
	e, tok := upstreamFunc(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/early-hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusAccepted)
		default:
			w.WriteHeader(http.StatusCreated)
		}
	})
	send := func(path, tok string) {
		t.Helper()
		resp := e.send("GET", path, tok, "", nil)
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	send("/healthz", "")
	send("/readyz", "")
	send("/api/storage/a", tok)
	send("/api/storage/b", tok)
	send("/down", tok)
	send("/early-hints", tok)
	send("/api/storage", "")
	send("/api/storage", "not-a-token")
	send("/api/admin/sessions", tok) // not an admin
	send("/api/a%2Fb", tok)          // an encoded slash: refused
	send("/api/auth/nosuch", tok)
	text := e.scrape()
	for _, line := range []string{
		`authsidecar_requests_total{code="200",outcome="answered"} 3`, // healthz, readyz, and the login
		`authsidecar_requests_total{code="201",outcome="forwarded"} 2`,
		`authsidecar_requests_total{code="503",outcome="forwarded"} 1`,
		`authsidecar_requests_total{code="202",outcome="forwarded"} 1`,
		`authsidecar_requests_total{code="401",outcome="unauthorized"} 1`,
		`authsidecar_requests_total{code="401",outcome="invalid_token"} 1`,
		`authsidecar_requests_total{code="403",outcome="insufficient_scope"} 1`,
		`authsidecar_requests_total{code="400",outcome="invalid_request"} 1`,
		`authsidecar_requests_total{code="404",outcome="not_found"} 1`,
		`authsidecar_request_duration_seconds_count{outcome="forwarded"} 4`,
	} {
		if !hasLine(text, line) {
			t.Errorf("no line %q in the scrape", line)
		}
	}
}

// TestUnreachableUpstreamIsCountedAsBadGateway: the last word on a
// forwarded request is the proxy's own answer.
func TestUnreachableUpstreamIsCountedAsBadGateway(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addUser("VR-1", "1111", "1111", false)
	tok := e.login("VR-1", "1111", "1111")
	e.up.Close()
	resp := e.send("GET", "/api/storage", tok, "", nil)
	resp.Body.Close()
	if text := e.scrape(); !hasLine(text, `authsidecar_requests_total{code="502",outcome="bad_gateway"} 1`) {
		t.Fatalf("no bad_gateway counted:\n%s", grepLines(text, "authsidecar_requests_total"))
	}
}

// TestDrainingIsCounted: a probe answered 503 while draining is not an
// outage; it has an outcome of its own.
func TestDrainingIsCounted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.gw.Drain()
	resp := e.send("GET", "/readyz", "", "", nil)
	resp.Body.Close()
	if text := e.scrape(); !hasLine(text, `authsidecar_requests_total{code="503",outcome="draining"} 1`) {
		t.Fatalf("no draining counted:\n%s", grepLines(text, "authsidecar_requests_total"))
	}
}

// TestCountedUpgradeAndStream: the request metrics' response writer
// still lets a stream flush and a protocol switch through, and counts
// them.
func TestCountedUpgradeAndStream(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	e, tok := upstreamFunc(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			_, _ = io.WriteString(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			<-release
			return
		}
		conn, brw := writeRaw(w, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		if conn == nil {
			return
		}
		defer conn.Close()
		line, _ := brw.ReadString('\n')
		_, _ = brw.WriteString("echo: " + line)
		_ = brw.Flush()
	})
	resp, err := e.get("/stream", tok)
	if err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || line != "data: first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(release)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	resp, err = e.get("/ws", tok, "Connection", "Upgrade", "Upgrade", "echo")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if resp.StatusCode != http.StatusSwitchingProtocols || !ok {
		t.Fatalf("status %d, body %T", resp.StatusCode, resp.Body)
	}
	if _, err := io.WriteString(rw, "ping\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(rw).ReadString('\n'); err != nil || line != "echo: ping\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	rw.Close()
	// The upgrade is counted when the proxy lets go of the connection.
	text := waitForLine(t, e, `authsidecar_requests_total{code="101",outcome="forwarded"} 1`)
	if !hasLine(text, `authsidecar_requests_total{code="200",outcome="forwarded"} 1`) {
		t.Fatalf("stream not counted:\n%s", grepLines(text, "authsidecar_requests_total"))
	}
}

// TestTraceparentPassesThroughWhenTracingIsOff: without tracing the proxy
// has no part in a trace, so the caller's trace context reaches the
// upstream as sent.
func TestTraceparentPassesThroughWhenTracingIsOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addUser("VR-1", "1111", "1111", false)
	tok := e.login("VR-1", "1111", "1111")
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const ts = "vendor=opaque"
	resp := e.send("GET", "/api/storage", tok, "", http.Header{"Traceparent": {tp}, "Tracestate": {ts}})
	resp.Body.Close()
	got, _ := e.up.lastRequest()
	if got == nil {
		t.Fatalf("nothing forwarded: %d", resp.StatusCode)
	}
	if got.Header.Get("Traceparent") != tp || got.Header.Get("Tracestate") != ts {
		t.Fatalf("upstream got traceparent %q, tracestate %q; want them as sent", got.Header.Get("Traceparent"), got.Header.Get("Tracestate"))
	}
}

func hasLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// waitForLine polls the scrape until it has line, for a count made when a
// connection is let go of; the deadline is generous, not a latency bound.
func waitForLine(t *testing.T, e *env, line string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		text := e.scrape()
		if hasLine(text, line) {
			return text
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line %q in the scrape:\n%s", line, grepLines(text, "authsidecar_requests_total"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
