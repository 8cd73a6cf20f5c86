package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestServerLimits: the proxy's server closes a connection whose headers
// stall (slowloris) and answers oversized headers with 431. The limits are
// shortened here so the test is quick; TestDefaultLimits checks the real
// ones are set.
func TestServerLimits(t *testing.T) {
	t.Parallel()
	srv := newServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }),
		limits{ReadHeader: 200 * time.Millisecond, Read: time.Second, Write: time.Second, Idle: time.Second, MaxHeaderBytes: 1 << 10},
		zap.NewNop())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	stalled, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	_, _ = io.WriteString(stalled, "GET / HTTP/1.1\r\nHost: x\r\n") // and never the end of the headers
	// No deadline of our own: the read ends when the server closes the
	// connection (a server that never did would hang the test, and fail it).
	if _, err := stalled.Read(make([]byte, 1)); err == nil {
		t.Fatal("a stalled connection got an answer instead of being closed by the server")
	}

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 16<<10)+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized headers: %d, want 431", resp.StatusCode)
	}
}

func TestDefaultLimits(t *testing.T) {
	t.Parallel()
	l := defaultLimits
	if l.ReadHeader <= 0 || l.ReadHeader > 30*time.Second || l.Read <= 0 || l.Write <= 0 || l.Idle <= 0 ||
		l.MaxHeaderBytes <= 0 || l.MaxHeaderBytes > 1<<20 {
		t.Fatalf("default limits %+v: every limit must be set and bounded", l)
	}
	srv := newServer(http.NotFoundHandler(), l, zap.NewNop())
	if srv.ReadHeaderTimeout != l.ReadHeader || srv.WriteTimeout != l.Write || srv.IdleTimeout != l.Idle || srv.MaxHeaderBytes != l.MaxHeaderBytes || srv.ReadTimeout != l.Read {
		t.Fatalf("newServer does not apply the limits: %+v", srv)
	}
}

func TestWarnIfKeyFileOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	core, logs := observer.New(zap.WarnLevel)
	log := zap.New(core)
	for mode, warn := range map[uint32]bool{0o600: false, 0o440: false, 0o644: true, 0o660: true} {
		p := dir + "/key-" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "")
		if err := writeFileMode(p, mode); err != nil {
			t.Fatal(err)
		}
		before := logs.Len()
		warnIfKeyFileOpen(p, log)
		if got := logs.Len() > before; got != warn {
			t.Errorf("mode %o: warned %v, want %v", mode, got, warn)
		}
	}
}

func writeFileMode(path string, mode uint32) error {
	if err := os.WriteFile(path, []byte("k"), 0o600); err != nil {
		return err
	}
	return os.Chmod(path, os.FileMode(mode))
}
