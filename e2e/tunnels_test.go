package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// newEchoUpstream is a backend that switches to an "echo" protocol (as a
// WebSocket server would) and echoes lines until the connection closes.
func newEchoUpstream(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "no upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = brw.WriteString("echo: " + line)
			_ = brw.Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// tunnelThrough opens an echo tunnel through proxy p with tok.
func tunnelThrough(t *testing.T, p *process, tok string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+tok+"\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade through the proxy: %v %v", resp, err)
	}
	if !echoes(conn, br) {
		t.Fatal("a new tunnel carries nothing")
	}
	return conn, br
}

func echoes(conn net.Conn, br *bufio.Reader) bool {
	if _, err := io.WriteString(conn, "ping\n"); err != nil {
		return false
	}
	line, err := br.ReadString('\n')
	return err == nil && line == "echo: ping\n"
}

// waitTunnelClosed waits until the proxy closes the tunnel; the deadline
// only ends a failing test.
func waitTunnelClosed(t *testing.T, conn net.Conn, br *bufio.Reader, what string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("the tunnel was still open after %s: %v", what, err)
	}
}

// TestTunnelEndsWithLogoutOnAnotherReplica: a tunnel open through replica
// B is closed when its session is logged out on replica A.
func TestTunnelEndsWithLogoutOnAnotherReplica(t *testing.T) {
	t.Parallel()
	s := newProxyStack(t, newEchoUpstream(t), nil)
	b := s.StartProxy()
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	conn, br := tunnelThrough(t, b, lb.Token)
	if r := do(t, "POST", s.Proxy.URL()+"/api/auth/logout", lb.Token, nil); r.Status != http.StatusNoContent {
		t.Fatalf("logout: %d", r.Status)
	}
	waitTunnelClosed(t, conn, br, "a logout on the other replica")
}

// TestTunnelEndsWithItsUser: removing the user (an operator command, a
// process of its own) closes its tunnels.
func TestTunnelEndsWithItsUser(t *testing.T) {
	t.Parallel()
	s := newProxyStack(t, newEchoUpstream(t), nil)
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	conn, br := tunnelThrough(t, s.Proxy, lb.Token)
	if out, code := s.Command("", "user", "remove", "--device", device, "--username", "1111"); code != 0 {
		t.Fatalf("user remove: %d %s", code, out)
	}
	waitTunnelClosed(t, conn, br, "its user was removed")
}

// TestTunnelEndsWhenItsSessionExpires runs with TOKEN_TTL=3s: long enough
// for the tunnel to open on a busy machine.
func TestTunnelEndsWhenItsSessionExpires(t *testing.T) {
	t.Parallel()
	s := newProxyStack(t, newEchoUpstream(t), map[string]string{"TOKEN_TTL": "3s", "SESSION_MAX_AGE": "3s"})
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	conn, br := tunnelThrough(t, s.Proxy, lb.Token)
	waitTunnelClosed(t, conn, br, "its session expired")
	if !time.Now().After(lb.ExpiresAt) {
		t.Fatalf("the tunnel was closed before its session expired at %s", lb.ExpiresAt)
	}
}
