package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// scrape returns the sum of every sample of metric on p's /metrics.
func scrape(t *testing.T, p *process, metric string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric) {
			continue
		}
		rest := line[len(metric):]
		if rest != "" && rest[0] != ' ' && rest[0] != '{' {
			continue // a longer name with this prefix
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// scrapeText returns p's whole /metrics page.
func scrapeText(t *testing.T, p *process) string {
	t.Helper()
	resp, err := http.Get("http://" + p.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return string(b)
}

const dbQueries = "authsidecar_db_query_duration_seconds_count"

// waitFor polls cond every 5 ms until it holds, failing after limit. It is
// for asynchronous effects (a notification crossing to another process),
// never a latency assertion: the benchmark measures latency.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settledQueries waits until p's count of database queries stops moving
// (the start-up cleanup runs beside the listener's start, and its queries
// count) and returns it, so that a test counting the queries of its own
// requests counts only those.
func settledQueries(t *testing.T, p *process) float64 {
	t.Helper()
	before := scrape(t, p, dbQueries)
	waitFor(t, 30*time.Second, "the start-up queries done", func() bool {
		time.Sleep(300 * time.Millisecond)
		now := scrape(t, p, dbQueries)
		settled := now == before
		before = now
		return settled
	})
	return before
}

// refusedSoon waits until tok is refused on p: revocation reaches another
// replica by a database notification, within milliseconds.
func refusedSoon(t *testing.T, p *process, tok string) {
	t.Helper()
	waitFor(t, 3*time.Second, "the token is still accepted on "+p.Addr, func() bool { return !works(t, p, tok) })
}

// TestCachedSessionCostsNoQuery: once a token and its session are cached,
// proxied requests cost no database query at all.
func TestCachedSessionCostsNoQuery(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	waitFor(t, 30*time.Second, "listener up", func() bool { return scrape(t, s.Proxy, "authsidecar_listener_up") == 1 })
	do(t, "GET", s.Proxy.URL()+"/api/storage/warm", lb.Token, nil) // caches token and session

	before := settledQueries(t, s.Proxy)
	for range 50 {
		if r := do(t, "GET", s.Proxy.URL()+"/api/storage/none", lb.Token, nil); r.Status != http.StatusNotFound {
			t.Fatalf("proxied request: %d %s", r.Status, r.Body)
		}
	}
	if after := scrape(t, s.Proxy, dbQueries); after != before {
		t.Fatalf("50 cached requests made %v database queries, want 0", after-before)
	}
	if hits := scrape(t, s.Proxy, `authsidecar_cache_requests_total{cache="session",result="hit"}`); hits < 50 {
		t.Fatalf("session cache hits %v, want ≥ 50", hits)
	}
}

// TestCacheOffChecksEveryRequest: with SESSION_CACHE=false every request
// is checked in the database (the benchmark's "caches off").
func TestCacheOffChecksEveryRequest(t *testing.T) {
	t.Parallel()
	s := newStack(t, map[string]string{"SESSION_CACHE": "false"})
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	before := scrape(t, s.Proxy, dbQueries)
	for range 10 {
		do(t, "GET", s.Proxy.URL()+"/api/storage/none", lb.Token, nil)
	}
	if after := scrape(t, s.Proxy, dbQueries); after-before < 10 {
		t.Fatalf("10 requests made %v queries with the cache off, want ≥ 10", after-before)
	}
}

// TestEvictionReachesOtherReplica: logout, refresh, admin revoke, operator
// revoke, user removal and password change on one process each end the
// session cached on another.
func TestEvictionReachesOtherReplica(t *testing.T) {
	t.Parallel()
	s := newStack(t, map[string]string{"REFRESH_GRACE": "0s"})
	b := s.StartProxy()
	s.AddUser(device, "admin", "9999", true)
	for _, u := range []string{"u-logout", "u-refresh", "u-admin", "u-operator", "u-remove", "u-passwd"} {
		s.AddUser(device, u, "1111", false)
	}
	admin := login(t, s.Proxy, device, "admin", "9999")
	tokens := map[string]string{}
	for _, u := range []string{"u-logout", "u-refresh", "u-admin", "u-operator", "u-remove", "u-passwd"} {
		tokens[u] = login(t, s.Proxy, device, u, "1111").Token
		if !works(t, b, tokens[u]) { // now cached on B
			t.Fatalf("%s refused on B", u)
		}
	}

	do(t, "POST", s.Proxy.URL()+"/api/auth/logout", tokens["u-logout"], nil)
	refresh(t, s.Proxy, tokens["u-refresh"])
	do(t, "DELETE", s.Proxy.URL()+"/api/admin/sessions/"+sessionID(t, s.Proxy, tokens["u-admin"]), admin.Token, nil)
	if out, code := s.Command("", "sessions", "revoke", "--device", device, "--username", "u-operator"); code != 0 {
		t.Fatal(out)
	}
	if out, code := s.Command("", "user", "remove", "--device", device, "--username", "u-remove"); code != 0 {
		t.Fatal(out)
	}
	if out, code := s.Command("2222\n", "user", "passwd", "--device", device, "--username", "u-passwd"); code != 0 {
		t.Fatal(out)
	}
	for u, tok := range tokens {
		t.Run(u, func(t *testing.T) { refusedSoon(t, b, tok) })
	}
	if !works(t, b, admin.Token) {
		t.Fatal("an untouched session was evicted as refused")
	}
}

// terminateListeners ends, from the server side, the listener connection
// of every proxy on the stack's schema, waits until the server has closed
// them, and then runs thenSQL: a change committed while nobody listens.
func terminateListeners(t *testing.T, s *stack, thenSQL string, args ...any) {
	t.Helper()
	var n int
	query(t, s.DB, `SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity
		WHERE application_name = 'authsidecar-listener authsidecar_' || left(md5(current_schema()), 16)`, nil, &n)
	if n == 0 {
		t.Fatal("no listener connection found")
	}
	if thenSQL != "" {
		conn, err := pgx.Connect(context.Background(), s.DB)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), thenSQL, args...); err != nil {
			t.Fatal(err)
		}
	}
}

// TestListenerLostFailsClosed: a session revoked while a replica's listener
// is down (so its notification is lost) is refused all the same: the
// replica emptied its cache when it lost the listener.
func TestListenerLostFailsClosed(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	waitFor(t, 30*time.Second, "listener up", func() bool { return scrape(t, s.Proxy, "authsidecar_listener_up") == 1 })
	if !works(t, s.Proxy, lb.Token) { // cached now
		t.Fatal("token refused")
	}
	id := sessionID(t, s.Proxy, lb.Token)

	terminateListeners(t, s, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, id)
	waitFor(t, 5*time.Second, "the proxy did not notice the lost listener", func() bool {
		return strings.Contains(s.Proxy.Logs(), "lost the session-change listener")
	})
	if works(t, s.Proxy, lb.Token) {
		t.Fatal("a session revoked while the listener was down is still accepted")
	}
	// The listener comes back by itself, and caching resumes.
	waitFor(t, 30*time.Second, "listener back", func() bool { return scrape(t, s.Proxy, "authsidecar_listener_up") == 1 })
}

// TestDatabaseDownIs503AndRecovers: with its database unreachable the proxy
// answers 503 and forwards nothing; when the database returns it serves
// again without a restart.
func TestDatabaseDownIs503AndRecovers(t *testing.T) {
	t.Parallel()
	db := databaseURL(t)
	u, _ := url.Parse(db)
	cut := newTCPCut(t, u.Host)
	viaCut := *u
	viaCut.Host = cut.ln.Addr().String()
	s := newStackOn(t, db, map[string]string{"DATABASE_URL": viaCut.String()})
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	if r := do(t, "POST", s.Proxy.URL()+"/api/storage", lb.Token, map[string]any{"key": "before", "data": 1}); r.Status != http.StatusCreated {
		t.Fatalf("store: %d %s", r.Status, r.Body)
	}

	cut.Cut()
	// Until the proxy notices that its listener is gone, a cached session
	// may still be served (and that record is legitimately stored); from
	// then on every request is checked in the database, which is down.
	refusedKey := ""
	for i := 0; refusedKey == ""; i++ {
		if i == 1000 {
			t.Fatal("no 503 with the database cut")
		}
		key := fmt.Sprintf("during-%d", i)
		r := do(t, "POST", s.Proxy.URL()+"/api/storage", lb.Token, map[string]any{"key": key, "data": 1})
		switch r.Status {
		case http.StatusCreated:
			time.Sleep(5 * time.Millisecond)
		case http.StatusServiceUnavailable:
			wantError(t, r, http.StatusServiceUnavailable, "unavailable")
			refusedKey = key
		default:
			t.Fatalf("store with the database cut: %d %s", r.Status, r.Body)
		}
	}
	if r := do(t, "GET", s.Proxy.URL()+"/readyz", "", nil); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("readyz %d with the database down", r.Status)
	}
	if r := do(t, "GET", s.Proxy.URL()+"/healthz", "", nil); r.Status != http.StatusOK {
		t.Fatalf("healthz %d with the database down", r.Status)
	}
	wantError(t, do(t, "POST", s.Proxy.URL()+"/api/auth/login", "", map[string]string{"deviceId": device, "username": "1111", "password": "1111"}),
		http.StatusServiceUnavailable, "unavailable")

	cut.Restore()
	waitFor(t, 30*time.Second, "the proxy did not recover", func() bool {
		return do(t, "GET", s.Proxy.URL()+"/api/storage/before", lb.Token, nil).Status == http.StatusOK
	})
	if r := do(t, "GET", s.Proxy.URL()+"/api/storage/"+refusedKey, lb.Token, nil); r.Status != http.StatusNotFound {
		t.Fatalf("a request answered 503 was forwarded after all: %d %s", r.Status, r.Body)
	}
	waitFor(t, 30*time.Second, "readyz back", func() bool { return do(t, "GET", s.Proxy.URL()+"/readyz", "", nil).Status == http.StatusOK })
}

// tcpCut is a TCP forwarder to PostgreSQL that a test can cut and restore,
// so that one proxy loses its database while the server (shared with the
// other tests) keeps running.
type tcpCut struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
}

func newTCPCut(t *testing.T, target string) *tcpCut {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &tcpCut{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() { ln.Close(); c.Cut() })
	go c.serve()
	return c
}

func (c *tcpCut) serve() {
	for {
		in, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.down {
			c.mu.Unlock()
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", c.target)
		if err != nil {
			c.mu.Unlock()
			in.Close()
			continue
		}
		c.conns[in], c.conns[out] = struct{}{}, struct{}{}
		c.mu.Unlock()
		go func() { _, _ = io.Copy(out, in); out.Close() }()
		go func() { _, _ = io.Copy(in, out); in.Close() }()
	}
}

// Cut closes every connection and refuses new ones.
func (c *tcpCut) Cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = true
	for conn := range c.conns {
		conn.Close()
	}
	clear(c.conns)
}

// Restore accepts connections again.
func (c *tcpCut) Restore() {
	c.mu.Lock()
	c.down = false
	c.mu.Unlock()
}
