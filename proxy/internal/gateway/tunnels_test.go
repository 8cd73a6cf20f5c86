package gateway_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

// echoUpstream switches to an "echo" protocol and echoes lines until the
// connection closes.
func echoUpstream(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "echo" {
		http.Error(w, "no upgrade", http.StatusBadRequest)
		return
	}
	conn, brw := writeRaw(w, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	if conn == nil {
		return
	}
	defer conn.Close()
	for {
		line, err := brw.ReadString('\n')
		if err != nil {
			return
		}
		_, _ = brw.WriteString("echo: " + line)
		_ = brw.Flush()
	}
}

// openTunnel opens an echo tunnel through the env with tok and checks that
// it carries a line.
func (e *env) openTunnel(tok string) io.ReadWriteCloser {
	e.t.Helper()
	resp, err := e.get("/ws", tok, "Connection", "Upgrade", "Upgrade", "echo")
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		e.t.Fatalf("upgrade: %d %s", resp.StatusCode, readAll(resp))
	}
	rw := resp.Body.(io.ReadWriteCloser)
	e.t.Cleanup(func() { rw.Close() })
	if !carries(rw) {
		e.t.Fatal("a new tunnel carries nothing")
	}
	return rw
}

// carries reports whether the tunnel still echoes a line.
func carries(rw io.ReadWriter) bool {
	if _, err := io.WriteString(rw, "ping\n"); err != nil {
		return false
	}
	line, err := bufio.NewReader(rw).ReadString('\n')
	return err == nil && line == "echo: ping\n"
}

// waitClosed waits until the proxy has closed the tunnel (a read ends);
// the generous deadline is only there so that a failing test ends.
func waitClosed(t *testing.T, rw io.Reader, what string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, rw)
		done <- err
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatalf("the tunnel still open after %s", what)
	}
}

// TestTunnelsEndWithTheirSession: an open WebSocket-like tunnel is closed
// when its session is logged out or revoked by an admin; tunnels of other
// sessions stay.
func TestTunnelsEndWithTheirSession(t *testing.T) {
	t.Parallel()
	e, tok, _ := upstreamAt(t, "", envOptions{}, echoUpstream)
	e.addUser("VR-1", "admin", "9999", true)
	root := e.login("VR-1", "admin", "9999")
	other := e.login("VR-1", "1111", "1111")

	logout := e.openTunnel(tok)
	survivor := e.openTunnel(other)
	e.send("POST", "/api/auth/logout", tok, "", nil)
	waitClosed(t, logout, "a logout")
	if !carries(survivor) {
		t.Fatal("a logout closed another session's tunnel")
	}

	id := e.sessionID(other)
	resp := e.send("DELETE", "/api/admin/sessions/"+id, root, "", nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("admin revoke: %d", resp.StatusCode)
	}
	waitClosed(t, survivor, "an admin's revocation")
}

// TestTunnelsEndWithADeviceRevocation: revoking a whole device closes its
// tunnels (the admin's own among them).
func TestTunnelsEndWithADeviceRevocation(t *testing.T) {
	t.Parallel()
	e, tok, _ := upstreamAt(t, "", envOptions{}, echoUpstream)
	e.addUser("VR-1", "admin", "9999", true)
	root := e.login("VR-1", "admin", "9999")
	tun := e.openTunnel(tok)
	e.send("POST", "/api/admin/sessions/revoke", root, "{}", http.Header{"Content-Type": {"application/json"}})
	waitClosed(t, tun, "the device's revocation")
}

// TestTunnelsAreSweptWhenTheirSessionEndsUnheard: a session ended where
// this replica does not hear of it (another process's change to the store)
// loses its tunnel at the next sweep.
func TestTunnelsAreSweptWhenTheirSessionEndsUnheard(t *testing.T) {
	t.Parallel()
	e, tok, _ := upstreamAt(t, "", envOptions{}, echoUpstream)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.gw.SweepTunnels(ctx)
	tun := e.openTunnel(tok)
	// Straight in the store, as an operator command in another process
	// would: nothing tells this gateway.
	if _, _, err := e.store.RemoveUser(context.Background(), "VR-1", "1111"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, tun, "its user was removed")
}

// sessionID returns the session id of tok.
func (e *env) sessionID(tok string) string {
	e.t.Helper()
	c, err := e.sessions.Authenticate(context.Background(), tok)
	if err != nil {
		e.t.Fatal(err)
	}
	return c.Session.ID
}
