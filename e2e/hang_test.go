package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testkit"
)

// TestHungDatabaseAnswers503: the proxy's database stops answering (a
// relay between them passes no more bytes, connections left open). A
// request whose session is not cached gets 503 and nothing is forwarded,
// a login gets 503, /readyz says not ready; once the database answers
// again the same proxy serves, with no restart.
func TestHungDatabaseAnswers503(t *testing.T) {
	t.Parallel()
	direct := databaseURL(t)
	relay, through := testkit.RelayDatabase(t, direct)
	backend := start(t, backendBin, map[string]string{"DATABASE_URL": direct})
	s := &stack{t: t, DB: through, Backend: backend, proxyEnv: map[string]string{
		"DATABASE_URL": through, "DATABASE_LISTEN_URL": direct,
		"UPSTREAM_URL": backend.URL(), "METRICS_ADDR": "127.0.0.1:0", "LOG_LEVEL": "debug",
		// A short bound for a quick test; the default is 2s.
		"SESSION_CHECK_TIMEOUT": "500ms", "DATABASE_STATEMENT_TIMEOUT": "1s",
	}}
	s.Proxy = s.StartProxy()
	s.AddUser(device, "1111", "1111", false)
	// Logged in on another replica, the session is unknown to this one:
	// its first request must ask the database.
	tok := login(t, s.StartProxy(), device, "1111", "1111").Token

	relay.Pause()
	r := do(t, "POST", s.Proxy.URL()+"/api/storage", tok, map[string]any{"key": "during-hang", "data": 1})
	wantError(t, r, http.StatusServiceUnavailable, "unavailable")
	r = do(t, "POST", s.Proxy.URL()+"/api/auth/login", "", map[string]string{"deviceId": device, "username": "1111", "password": "1111"})
	if r.Status != http.StatusServiceUnavailable {
		t.Errorf("login on a hung database: %d %s, want 503", r.Status, r.Body)
	}
	if r := do(t, "GET", s.Proxy.URL()+"/readyz", "", nil); r.Status != http.StatusServiceUnavailable {
		t.Errorf("/readyz on a hung database: %d, want 503", r.Status)
	}
	relay.Resume()

	waitFor(t, 60*time.Second, "the proxy serves again once the database answers", func() bool {
		r := do(t, "POST", s.Proxy.URL()+"/api/storage", tok, map[string]any{"key": "after-hang", "data": 2})
		return r.Status == http.StatusCreated
	})
	if r := do(t, "GET", s.Proxy.URL()+"/api/storage/during-hang", tok, nil); r.Status != http.StatusNotFound {
		t.Errorf("the request answered 503 was forwarded: GET during-hang = %d %s", r.Status, r.Body)
	}
	if !strings.Contains(s.Proxy.Logs(), "not checked within SESSION_CHECK_TIMEOUT (500ms)") {
		t.Errorf("no log line names the session check's bound:\n%s", s.Proxy.Logs())
	}
}

// TestHungListenerEmptiesCache: the listener's connection hangs silently
// (no error, no reset: a relay that passes no more bytes), a cached session
// is revoked meanwhile and its notification never arrives. Within the
// listener's health bound (LISTENER_HEALTH_INTERVAL, twice) the replica
// gives up on the connection, empties its cache and checks in the
// database, which refuses the session; once the connection can be made
// again it listens and caches again.
func TestHungListenerEmptiesCache(t *testing.T) {
	t.Parallel()
	direct := databaseURL(t)
	relay, through := testkit.RelayDatabase(t, direct)
	s := newStackOn(t, direct, map[string]string{
		"DATABASE_LISTEN_URL":      through,
		"LISTENER_HEALTH_INTERVAL": "300ms",
	})
	s.AddUser(device, "1111", "1111", false)
	listening := func() bool { return scrape(t, s.Proxy, "authsidecar_listener_up") == 1 }
	waitFor(t, 30*time.Second, "listener up", listening)
	tok := login(t, s.Proxy, device, "1111", "1111").Token
	for range 2 { // answered from the cache: the replica cached the session it created
		if !works(t, s.Proxy, tok) {
			t.Fatal("session refused before the hang")
		}
	}
	if hits := scrape(t, s.Proxy, `authsidecar_cache_requests_total{cache="session",result="hit"}`); hits < 1 {
		t.Fatalf("the session was not cached (hits %v)", hits)
	}

	relay.Pause()
	if out, code := s.Command("", "sessions", "revoke", "--device", device); code != 0 {
		t.Fatal(out)
	}
	waitFor(t, 30*time.Second, "the revoked session is still accepted while the listener hangs", func() bool { return !works(t, s.Proxy, tok) })
	waitFor(t, 10*time.Second, "listener still reported up", func() bool { return !listening() })

	relay.Resume()
	waitFor(t, 30*time.Second, "the listener did not come back", listening)
	if !strings.Contains(s.Proxy.Logs(), "lost the session-change listener") {
		t.Errorf("the replica did not log the lost listener:\n%s", s.Proxy.Logs())
	}
}

// TestHungDatabaseLocksNoOneOut: logins retried while the database hangs
// must not lock the account. Each attempt is counted in the database
// before its password is checked; the proxy gives up waiting, but the
// counting statement it sent is executed once the database answers again
// (here: the relay delivers what it held back), and nothing took it back.
// Found by the fault suite (a frozen PostgreSQL); made certain here with
// LOGIN_MAX_FAILURES=2 and four logins at once into the hang, each on one
// of the pool's connections. Logins a moment before have used them, so
// that each has the counting statement prepared and sends it at once
// (rather than first a ping, or the statement's preparation, which the
// hang would hold and nothing after it).
func TestHungDatabaseLocksNoOneOut(t *testing.T) {
	t.Parallel()
	direct := databaseURL(t)
	relay, through := testkit.RelayDatabase(t, direct)
	backend := start(t, backendBin, map[string]string{"DATABASE_URL": direct})
	s := &stack{t: t, DB: through, Backend: backend, proxyEnv: map[string]string{
		"DATABASE_URL": through + "&pool_max_conns=4", "DATABASE_LISTEN_URL": direct,
		"UPSTREAM_URL": backend.URL(), "METRICS_ADDR": "127.0.0.1:0", "LOG_LEVEL": "debug",
		"SESSION_CHECK_TIMEOUT": "500ms", "DATABASE_STATEMENT_TIMEOUT": "1s", "LOGIN_MAX_FAILURES": "2",
	}}
	s.Proxy = s.StartProxy()
	s.AddUser(device, "1111", "1111", false)
	// Before the hang a busy answer is retried (see retryBusy); into the
	// hang every login must get its 503 at once.
	logins := func(n int, beforeHang bool) []int {
		statuses := make([]int, n)
		var wg sync.WaitGroup
		for i := range statuses {
			wg.Go(func() {
				send := func() (int, []byte) {
					return call("POST", s.Proxy.URL()+"/api/auth/login", "", map[string]string{"deviceId": device, "username": "1111", "password": "1111"})
				}
				if beforeHang {
					statuses[i], _ = retryBusy(send)
				} else {
					statuses[i], _ = send()
				}
			})
		}
		wg.Wait()
		return statuses
	}
	for range 3 {
		if st := logins(2, true); !slices.Equal(st, []int{200, 200}) {
			t.Fatalf("logins before the hang: %v", st)
		}
	}
	relay.Pause()
	if st := logins(4, false); !slices.Equal(st, []int{503, 503, 503, 503}) {
		t.Fatalf("logins into the hang: %v, want 503 each", st)
	}
	relay.Resume()

	var r response
	waitFor(t, 60*time.Second, "a login answered once the database is back", func() bool {
		r = do(t, "POST", s.Proxy.URL()+"/api/auth/login", "", map[string]string{"deviceId": device, "username": "1111", "password": "1111"})
		return r.Status != http.StatusServiceUnavailable
	})
	if r.Status != http.StatusOK {
		t.Fatalf("the right password after the hang: %d %s, want 200 (the hang's attempts must not count)", r.Status, r.Body)
	}
}

// call sends one request and returns its status (0: no answer), for
// requests made from several goroutines at once (do records each answer
// for the OpenAPI check, and fails the test from the calling goroutine).
func call(method, url, token string, body any) (int, []byte) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := callClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

var callClient = &http.Client{Timeout: 30 * time.Second}

// TestListenerProbesAreNotRequestQueries: the listener's health probes
// (a notification sent through the pool while nothing else is heard) are
// the replica's own upkeep: a replica at rest makes no query the metrics
// count, so that "queries per request" stays what requests cost.
func TestListenerProbesAreNotRequestQueries(t *testing.T) {
	t.Parallel()
	s := newStack(t, map[string]string{"LISTENER_HEALTH_INTERVAL": "100ms"})
	waitFor(t, 30*time.Second, "listener up", func() bool { return scrape(t, s.Proxy, "authsidecar_listener_up") == 1 })
	// Probes every 100 ms would keep the count moving, so settling alone
	// would fail if they counted.
	before := settledQueries(t, s.Proxy)
	time.Sleep(time.Second) // some ten probes' time
	if after := scrape(t, s.Proxy, dbQueries); after != before {
		t.Fatalf("a replica at rest made %v counted queries", after-before)
	}
	if scrape(t, s.Proxy, "authsidecar_listener_up") != 1 {
		t.Fatal("the listener's probes failed")
	}
}
