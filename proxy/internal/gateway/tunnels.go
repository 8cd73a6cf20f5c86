package gateway

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// TunnelSweep is how often the open tunnels' sessions are checked again in
// the store, whatever else happened: it bounds how long a tunnel outlives
// a session that ended without this replica hearing of it (an expiry, an
// operator's command on the embedded store, a lost notification).
const TunnelSweep = 2 * time.Second

// tunnels are the open upgraded connections (WebSockets), by session. A
// tunnel carries bytes long after the request that opened it was
// authenticated, so it is closed when its session ends: logged out,
// revoked (on any replica), expired, or its user removed.
type tunnels struct {
	// live reports whether a session is still live, asking the store.
	live func(ctx context.Context, id string) (bool, error)
	now  func() time.Time
	log  *zap.Logger

	mu        sync.Mutex
	bySession map[string]map[*tunnel]struct{}
}

// tunnel is one upgraded client connection; closing it ends the relay in
// both directions (ReverseProxy stops copying when either side fails).
type tunnel struct {
	net.Conn
	sessionID string
	expires   time.Time // the session's expiry when the tunnel opened
	owner     *tunnels
	once      sync.Once
}

func (c *tunnel) Close() error {
	c.once.Do(func() { c.owner.forget(c) })
	return c.Conn.Close()
}

func (t *tunnels) add(c *tunnel) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.bySession == nil {
		t.bySession = map[string]map[*tunnel]struct{}{}
	}
	set := t.bySession[c.sessionID]
	if set == nil {
		set = map[*tunnel]struct{}{}
		t.bySession[c.sessionID] = set
	}
	set[c] = struct{}{}
}

func (t *tunnels) forget(c *tunnel) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if set := t.bySession[c.sessionID]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(t.bySession, c.sessionID)
		}
	}
}

// sessions returns the ids of the sessions with open tunnels.
func (t *tunnels) sessions() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	ids := make([]string, 0, len(t.bySession))
	for id := range t.bySession {
		ids = append(ids, id)
	}
	return ids
}

// check closes the tunnels of session id if it is no longer live. While
// the store cannot answer, a tunnel is kept up to the expiry its session
// had when it opened, which is known without the store; past that, it is
// closed: when in doubt, stop carrying bytes.
func (t *tunnels) check(ctx context.Context, id string) {
	t.mu.Lock()
	n := len(t.bySession[id])
	t.mu.Unlock()
	if n == 0 {
		return
	}
	live, err := t.live(ctx, id)
	now := t.now()
	t.mu.Lock()
	var doomed []*tunnel
	for c := range t.bySession[id] {
		if (err == nil && !live) || (err != nil && !now.Before(c.expires)) {
			doomed = append(doomed, c)
		}
	}
	t.mu.Unlock()
	if err != nil && len(doomed) == 0 {
		t.log.Warn("could not check a tunnel's session; kept until its expiry", zap.String("session_id", id), zap.Error(err))
	}
	for _, c := range doomed {
		_ = c.Close()
	}
	if len(doomed) > 0 {
		t.log.Info("tunnels closed: their session ended", zap.String("session_id", id), zap.Int("count", len(doomed)))
	}
}

// checkAll checks every session that has a tunnel open.
func (t *tunnels) checkAll(ctx context.Context) {
	for _, id := range t.sessions() {
		t.check(ctx, id)
	}
}

// SessionChanged is told that session id changed (the store's change
// notification, on every replica): its tunnels are closed if it ended.
// It returns at once; the check runs on its own.
func (g *Gateway) SessionChanged(id string) {
	go g.tunnels.check(context.WithoutCancel(context.Background()), id)
}

// SweepTunnels checks the sessions of open tunnels every TunnelSweep until
// ctx ends (see TunnelSweep).
func (g *Gateway) SweepTunnels(ctx context.Context) {
	t := time.NewTicker(TunnelSweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.tunnels.checkAll(ctx)
		}
	}
}

// sessionsChanged checks every tunnel after a change this replica made
// (a logout, a revocation) whose sessions it does not list one by one.
func (g *Gateway) sessionsChanged() {
	go g.tunnels.checkAll(context.Background())
}

// tunnelWriter is the ResponseWriter of an upgrade request: the connection
// ReverseProxy takes over for the tunnel is registered under the session.
type tunnelWriter struct {
	http.ResponseWriter
	tunnels *tunnels
	session auth.Session
}

func (w *tunnelWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	c := &tunnel{Conn: conn, sessionID: w.session.ID, expires: w.session.ExpiresAt, owner: w.tunnels}
	w.tunnels.add(c)
	// The buffered reader and writer keep the original connection: the
	// proxy copies through them, and Close on c ends both.
	return c, brw, nil
}

// Unwrap lets http.ResponseController reach the server's writer (Flush).
func (w *tunnelWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
