package gateway_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authsidecar/authsidecar/proxy/internal/gateway"
)

// bodyUpstream is a real backend that counts the requests that reached it
// and, apart, those whose body it could read to the end.
type bodyUpstream struct {
	*httptest.Server
	hits, complete atomic.Int64
}

func newBodyUpstream(t *testing.T) *bodyUpstream {
	t.Helper()
	u := &bodyUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		if _, err := io.ReadAll(r.Body); err != nil {
			return // the proxy hung up half-way through the body
		}
		u.complete.Add(1)
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(u.Close)
	return u
}

// exchange writes head and body to addr as raw bytes, half-closes the
// connection when cut is set (the client stops sending: the body ends
// early), and reads one response.
func exchange(t *testing.T, addr, head, body string, cut bool) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A generous deadline: it only stops a hung test, nothing is timed.
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, head+body); err != nil {
		t.Fatal(err)
	}
	if cut {
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: %v", head+body, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestChunkedBodyBrokenByTheClientIs400: a forwarded request whose body the
// client breaks (a bad chunk size, a chunk longer than it says, a body cut
// off) is answered 400 invalid_request. It is logged as a refused request
// (debug), never as a warning about the upstream, and the upstream never
// receives a complete request. A well-formed chunked body on the same path
// is forwarded whole, so each 400 is the broken body's.
func TestChunkedBodyBrokenByTheClientIs400(t *testing.T) {
	t.Parallel()
	up := newBodyUpstream(t)
	upURL, _ := url.Parse(up.URL)
	core, logs := observer.New(zapcore.DebugLevel)
	e := newEnvWith(t, envOptions{Upstream: upURL, Gateway: func(c *gateway.Config) {
		c.Log = zap.New(core)
	}})
	e.addUser("VR-1", "1111", "1111", false)
	tok := e.login("VR-1", "1111", "1111")
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	chunked := "POST /api/storage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok +
		"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"

	if status, body := exchange(t, addr, chunked, "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", false); status != http.StatusCreated {
		t.Fatalf("a well-formed chunked body: %d %s; the refusals below would prove nothing", status, body)
	}
	if up.complete.Load() != 1 {
		t.Fatal("the well-formed chunked body did not reach the upstream whole")
	}
	logs.TakeAll()

	for _, c := range []struct {
		name, head, body string
		cut              bool
	}{
		{"chunk size not hexadecimal", chunked, "zz\r\nhello\r\n0\r\n\r\n", false},
		{"bad chunk size after a good chunk", chunked, "5\r\nhello\r\nzz\r\n", false},
		{"chunk longer than its size", chunked, "3\r\nhello\r\n0\r\n\r\n", false},
		{"chunk size beyond 64 bits", chunked, "10000000000000000\r\n", false},
		{"cut off inside a chunk", chunked, "a\r\nhel", true},
		{"cut off before the last chunk", chunked, "5\r\nhello\r\n", true},
		{"Content-Length longer than the body", "POST /api/storage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok +
			"\r\nContent-Length: 100\r\n\r\n", "hello", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := exchange(t, addr, c.head, c.body, c.cut)
			if status != http.StatusBadRequest || !strings.Contains(body, `"error":"invalid_request"`) {
				t.Fatalf("%d %s, want 400 invalid_request", status, body)
			}
			var refused bool
			for _, entry := range logs.TakeAll() {
				if entry.Level >= zapcore.WarnLevel {
					t.Errorf("logged at %s: %s %v", entry.Level, entry.Message, entry.ContextMap())
				}
				if entry.Message == "request refused" && entry.ContextMap()["status"] == int64(http.StatusBadRequest) {
					refused = true
				}
			}
			if !refused {
				t.Errorf("not logged as a refused request")
			}
		})
	}
	if n := up.complete.Load(); n != 1 {
		t.Fatalf("the upstream read %d complete bodies, want only the well-formed one", n)
	}
}
