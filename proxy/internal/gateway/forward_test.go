package gateway_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authsidecar/authsidecar/proxy/internal/gateway"
)

// upstreamFunc starts a real upstream serving h, and an env in front of it
// (a user VR-1/1111 logged in).
func upstreamFunc(t *testing.T, h http.HandlerFunc) (*env, string) {
	e, tok, _ := upstreamAt(t, "", envOptions{}, h)
	return e, tok
}

// upstreamAt is upstreamFunc with path appended to the upstream's URL and
// the env built with o (its Upstream set here); it also returns the
// upstream's host:port.
func upstreamAt(t *testing.T, path string, o envOptions, h http.HandlerFunc) (*env, string, string) {
	t.Helper()
	up := httptest.NewServer(h)
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL + path)
	o.Upstream = u
	e := newEnvWith(t, o)
	e.addUser("VR-1", "1111", "1111", false)
	return e, e.login("VR-1", "1111", "1111"), u.Host
}

// get sends GET path with the bearer token tok and any extra headers, and
// returns the client's answer as is (an error included, which some tests
// expect).
func (e *env) get(path, tok string, hdr ...string) (*http.Response, error) {
	req, err := http.NewRequest("GET", e.srv.URL+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return http.DefaultClient.Do(req)
}

// TestStreamingResponseIsFlushedAsItComes: a response without a length (a
// long poll, a chunked stream) and a text/event-stream one, even with a
// length, reach the client piece by piece, not when the upstream has
// finished.
func TestStreamingResponseIsFlushedAsItComes(t *testing.T) {
	t.Parallel()
	const first, second = "data: first\n\n", "data: second\n\n"
	release := make(chan struct{})
	e, tok := upstreamFunc(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
			w.Header().Set("Content-Length", strconv.Itoa(len(first+second)))
		} else {
			w.Header().Set("Content-Type", "application/x-ndjson")
		}
		_, _ = io.WriteString(w, first)
		w.(http.Flusher).Flush()
		select {
		case <-release: // the client has read the first part
		case <-time.After(10 * time.Second):
		}
		_, _ = io.WriteString(w, second)
	})
	for _, path := range []string{"/events", "/stream"} {
		release = make(chan struct{})
		type head struct {
			resp *http.Response
			br   *bufio.Reader
			line string
			err  error
		}
		got := make(chan head, 1)
		go func() { // the status, the headers and the first part, before the upstream is done
			resp, err := e.get(path, tok)
			if err != nil {
				got <- head{err: err}
				return
			}
			br := bufio.NewReader(resp.Body)
			line, err := br.ReadString('\n')
			got <- head{resp, br, line, err}
		}()
		var h head
		select {
		case h = <-got:
		case <-time.After(5 * time.Second):
			close(release)
			t.Fatalf("%s: the first part did not arrive before the upstream finished", path)
		}
		close(release)
		if h.err != nil {
			t.Fatalf("%s: %v", path, h.err)
		}
		rest, err := io.ReadAll(h.br)
		h.resp.Body.Close()
		if h.resp.StatusCode != http.StatusOK || h.line+string(rest) != first+second || err != nil {
			t.Fatalf("%s: status %d, body %q, %v", path, h.resp.StatusCode, h.line+string(rest), err)
		}
	}
}

// TestRequestTrailersAreNotForwarded: trailers come after the body, where
// no header check looks; a client must not pass its own X-Auth-* or a token
// to the upstream that way.
func TestRequestTrailersAreNotForwarded(t *testing.T) {
	t.Parallel()
	trailers := make(chan http.Header, 1)
	e, tok := upstreamFunc(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		trailers <- r.Trailer.Clone()
		w.WriteHeader(http.StatusCreated)
	})
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "POST /api/storage HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer "+tok+"\r\n"+
		"Transfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"+
		"5\r\nhello\r\n0\r\nX-Checksum: 1\r\nX-Auth-Admin: true\r\nX_Auth_Device_Id: VR-9\r\nAuthorization: Bearer stolen\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for k, v := range <-trailers {
		if len(v) > 0 {
			t.Errorf("upstream was sent the trailer %s: %q", k, v)
		}
	}
}

// TestTrailersAreForwarded: trailers the upstream announced, and those it
// did not, reach the client after the body.
func TestTrailersAreForwarded(t *testing.T) {
	t.Parallel()
	e, tok := upstreamFunc(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-Checksum", "42")
		if r.URL.Path == "/late" {
			w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
		}
	})
	for _, path := range []string{"/announced", "/late"} {
		resp := e.send("GET", path, tok, "", nil)
		if body := readAll(resp); body != "body" {
			t.Fatalf("%s: body %q", path, body)
		}
		if got := resp.Trailer.Get("X-Checksum"); got != "42" {
			t.Errorf("%s: announced trailer %q, want 42 (trailers %v)", path, got, resp.Trailer)
		}
		if got := resp.Trailer.Get("X-Late"); path == "/late" && got != "yes" {
			t.Errorf("%s: unannounced trailer %q, want yes (trailers %v)", path, got, resp.Trailer)
		}
	}
}

// TestHopByHopHeadersStayOnTheirHop: headers that describe one connection,
// and those a Connection header names, are not passed on, either way; a
// client that takes trailers still says so to the upstream.
func TestHopByHopHeadersStayOnTheirHop(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen http.Header
	e, tok := upstreamFunc(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		w.Header().Set("Connection", "X-Upstream-Hop")
		w.Header().Set("X-Upstream-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Kept", "1")
		w.WriteHeader(http.StatusCreated)
	})
	resp := e.send("GET", "/x", tok, "", http.Header{
		"Connection":          {"X-Client-Hop"},
		"X-Client-Hop":        {"1"},
		"Keep-Alive":          {"300"},
		"Proxy-Authorization": {"Basic c2VjcmV0"},
		"Te":                  {"trailers, deflate"},
		"X-Plain":             {"kept"},
	})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d: %s", resp.StatusCode, readAll(resp))
	}
	mu.Lock()
	defer mu.Unlock()
	for _, k := range []string{"X-Client-Hop", "Keep-Alive", "Proxy-Authorization", "Authorization"} {
		if v, ok := seen[k]; ok {
			t.Errorf("upstream was sent %s: %q", k, v)
		}
	}
	if got := seen.Get("Te"); got != "trailers" {
		t.Errorf("upstream Te %q, want trailers", got)
	}
	if got := seen.Get("X-Plain"); got != "kept" {
		t.Errorf("upstream X-Plain %q, want kept", got)
	}
	if resp.Header.Get("X-Upstream-Hop") != "" || resp.Header.Get("Keep-Alive") != "" {
		t.Errorf("client was sent the upstream's hop-by-hop headers: %v", resp.Header)
	}
	if resp.Header.Get("X-Kept") != "1" {
		t.Errorf("client lost X-Kept: %v", resp.Header)
	}
}

// TestRequestReachesTheUpstreamWhole: method, body, query and path (joined
// to the upstream URL's own path) arrive as sent; Host is the upstream's and
// X-Forwarded-Host the one the client used; a query Go would not parse is
// not passed on as it was.
func TestRequestReachesTheUpstreamWhole(t *testing.T) {
	t.Parallel()
	type seenReq struct{ method, path, query, body, host, fwdHost, ua string }
	seen := make(chan seenReq, 4)
	e, tok, upHost := upstreamAt(t, "/base", envOptions{}, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- seenReq{r.Method, r.URL.Path, r.URL.RawQuery, string(b), r.Host, r.Header.Get("X-Forwarded-Host"), strings.Join(r.Header["User-Agent"], "|")}
		w.WriteHeader(http.StatusCreated)
	})
	proxyHost := strings.TrimPrefix(e.srv.URL, "http://")

	resp := e.send("POST", "/api/storage?key=a&n=2", tok, `{"key":"a"}`, http.Header{"User-Agent": {"headset/1.0"}})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", resp.StatusCode)
	}
	want := seenReq{"POST", "/base/api/storage", "key=a&n=2", `{"key":"a"}`, upHost, proxyHost, "headset/1.0"}
	if got := <-seen; got != want {
		t.Errorf("upstream saw %+v, want %+v", got, want)
	}

	resp = e.send("GET", "/q?a=1;b=2&c=3", tok, "", http.Header{"User-Agent": {""}})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := <-seen
	if got.query != "c=3" {
		t.Errorf("query with ';' reached the upstream as %q, want c=3", got.query)
	}
	if got.ua != "" {
		t.Errorf("a client without User-Agent: the upstream saw %q", got.ua)
	}
}

// TestUpgradeIsRelayedWithIdentity: a request that asks for a protocol
// upgrade (a WebSocket) is forwarded with the caller's identity, and the
// switched connection is relayed both ways.
func TestUpgradeIsRelayedWithIdentity(t *testing.T) {
	t.Parallel()
	device := make(chan string, 1)
	e, tok := upstreamFunc(t, func(w http.ResponseWriter, r *http.Request) {
		device <- r.Header.Get("X-Auth-Device-Id")
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "no upgrade", http.StatusBadRequest)
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
	resp, err := e.get("/ws", tok, "Connection", "Upgrade", "Upgrade", "echo")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d: %s", resp.StatusCode, readAll(resp))
	}
	if got := <-device; got != "VR-1" {
		t.Errorf("upgrade request reached the upstream with X-Auth-Device-Id %q", got)
	}
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("switched body is a %T", resp.Body)
	}
	if _, err := io.WriteString(rw, "ping\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(rw).ReadString('\n')
	if err != nil || line != "echo: ping\n" {
		t.Fatalf("read %q, %v", line, err)
	}
}

// TestTruncatedUpstreamBodyIsNotPassedOffAsWhole: when the upstream dies
// in the middle of a body, with a length or chunked, the client's
// connection is cut rather than the short body ending normally.
func TestTruncatedUpstreamBodyIsNotPassedOffAsWhole(t *testing.T) {
	t.Parallel()
	e, tok := upstreamFunc(t, func(w http.ResponseWriter, r *http.Request) {
		raw := "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"
		if r.URL.Path == "/chunked" {
			raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nonly part\r\n"
		}
		if conn, _ := writeRaw(w, raw); conn != nil {
			conn.Close()
		}
	})
	for _, path := range []string{"/length", "/chunked"} {
		resp, err := e.get(path, tok)
		if err != nil {
			continue // cut before the headers went out: no answer at all, fine
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("%s: a truncated body (%q, status %d) was read to its end without an error", path, b, resp.StatusCode)
		}
	}
}

// TestUnaskedProtocolSwitchIs502: an upstream that switches protocols on a
// request that did not ask for it gets no connection to the client.
func TestUnaskedProtocolSwitchIs502(t *testing.T) {
	t.Parallel()
	e, tok := upstreamFunc(t, func(w http.ResponseWriter, r *http.Request) {
		if conn, _ := writeRaw(w, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: other\r\nConnection: Upgrade\r\n\r\n"); conn != nil {
			time.Sleep(100 * time.Millisecond)
			conn.Close()
		}
	})
	wantJSONError(t, e.send("GET", "/x", tok, "", nil), http.StatusBadGateway, "bad_gateway")
}

// writeRaw takes over the connection of an upstream handler and writes raw
// to it as the response, which net/http would not let a handler write (a
// lie about the length, a switch of protocols). It returns the connection
// and its buffers, or nil if it could not take it over.
func writeRaw(w http.ResponseWriter, raw string) (net.Conn, *bufio.ReadWriter) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil
	}
	_, _ = brw.WriteString(raw)
	_ = brw.Flush()
	return conn, brw
}

// TestUpstreamCutShortIsLoggedAndAHangupIsNot: an upstream that dies in
// the middle of a body is worth a warning; a client that hangs up on a
// stream, which cancels the upstream's body too, is not.
func TestUpstreamCutShortIsLoggedAndAHangupIsNot(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	logTo := envOptions{Gateway: func(c *gateway.Config) { c.Log = zap.New(core) }}
	let := make(chan struct{}, 1)
	e, tok, _ := upstreamAt(t, "", logTo, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cut" {
			if conn, _ := writeRaw(w, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\npart\r\n"); conn != nil {
				conn.Close()
			}
			return
		}
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // until the proxy lets go
		let <- struct{}{}
	})

	resp, err := e.get("/stream", tok)
	if err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || line != "data: first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	resp.Body.Close() // the client hangs up mid-stream
	<-let             // and the proxy let go of the upstream

	if resp, err := e.get("/cut", tok); err == nil {
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	const cut = "read error during body copy"
	for deadline := time.Now().Add(10 * time.Second); logs.FilterMessageSnippet(cut).Len() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning %q logged; logged: %v", cut, logs.All())
		}
	}
	// The hang-up came first: had it been logged, it would be by now.
	if warns := logs.FilterLevelExact(zapcore.WarnLevel).All(); len(warns) != 1 {
		t.Errorf("want one warning, for the upstream cut short; got %v", warns)
	}
}
