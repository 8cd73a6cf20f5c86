package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authsidecar/authsidecar/internal/testkit"
)

// scrape returns the exposition text the handler serves.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: %d", rec.Code)
	}
	return rec.Body.String()
}

func wantLine(t *testing.T, text, line string) {
	t.Helper()
	for _, l := range strings.Split(text, "\n") {
		if l == line {
			return
		}
	}
	t.Errorf("no line %q in the scrape", line)
}

func TestCountersAreExported(t *testing.T) {
	t.Parallel()
	m := New()
	m.Login("success")
	m.Login("success")
	m.Login("locked_out")
	m.Lockout()
	m.Session("created", 3)
	m.TokenCache(true)
	m.TokenCache(false)
	m.SessionCache(true)
	m.SessionCacheBypassed()
	m.Notification()
	m.ListenerUp(true)
	text := scrape(t, m)
	for _, line := range []string{
		`authsidecar_logins_total{result="success"} 2`,
		`authsidecar_logins_total{result="locked_out"} 1`,
		`authsidecar_lockouts_total 1`,
		`authsidecar_sessions_total{event="created"} 3`,
		`authsidecar_cache_requests_total{cache="token",result="hit"} 1`,
		`authsidecar_cache_requests_total{cache="token",result="miss"} 1`,
		`authsidecar_cache_requests_total{cache="session",result="hit"} 1`,
		`authsidecar_cache_requests_total{cache="session",result="bypass"} 1`,
		`authsidecar_revocation_notifications_total 1`,
		`authsidecar_listener_up 1`,
	} {
		wantLine(t, text, line)
	}
	m.ListenerUp(false)
	wantLine(t, scrape(t, m), `authsidecar_listener_up 0`)
}

// TestNilMetricsDoNothing: the operator commands run without metrics, and
// every method must then be a no-op rather than a nil dereference.
func TestNilMetricsDoNothing(t *testing.T) {
	t.Parallel()
	var m *Metrics
	m.Login("success")
	m.Lockout()
	m.Session("created", 1)
	m.TokenCache(true)
	m.SessionCache(false)
	m.SessionCacheBypassed()
	m.Notification()
	m.ListenerUp(true)
	m.LiveSessions(context.Background(), time.Second, func(context.Context) (int64, error) { return 0, nil }, zap.NewNop())
	m.Request("forwarded", 200, time.Millisecond)
	m.HashSlots(1, func() int { return 0 }, func() int { return 0 })
	m.DBPool(nil)
	if m.Transport(http.DefaultTransport) != http.DefaultTransport {
		t.Fatal("a nil Metrics wrapped the transport")
	}
}

// TestLiveSessionsAreCountedInTheBackground: a scrape reads the last
// count and never counts itself; the gauge is absent until a count
// succeeded, and a failed count keeps the last one.
func TestLiveSessionsAreCountedInTheBackground(t *testing.T) {
	t.Parallel()
	m := New()
	if strings.Contains(scrape(t, m), "authsidecar_sessions_live") {
		t.Fatal("a live sessions gauge before any count")
	}
	answers := make(chan error)
	counted := make(chan struct{}, 1)
	var n atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	core, logs := observer.New(zap.WarnLevel)
	go func() {
		defer close(done)
		// Counts every millisecond, each waiting for this test's answer
		// (rather than its own deadline of a millisecond).
		m.LiveSessions(ctx, time.Millisecond, func(countCtx context.Context) (int64, error) {
			if countCtx.Value(untracedKey{}) == nil {
				t.Error("the count's queries would be timed as the proxy's own")
			}
			select {
			case err := <-answers:
				defer func() { counted <- struct{}{} }()
				return n.Add(1) * 10, err
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}, zap.New(core))
	}()
	answer := func(err error) {
		answers <- err
		<-counted
	}
	answer(errors.New("down"))
	scrapes := scrape(t, m)
	if strings.Contains(scrapes, "authsidecar_sessions_live") {
		t.Fatalf("a gauge after a failed first count:\n%s", scrapes)
	}
	answer(nil)
	answer(nil)
	wantLine(t, scrape(t, m), `authsidecar_sessions_live 30`)
	wantLine(t, scrape(t, m), `authsidecar_sessions_live 30`) // scrapes do not count
	answer(errors.New("down"))
	wantLine(t, scrape(t, m), `authsidecar_sessions_live 30`)
	if n := logs.FilterMessageSnippet("live sessions not counted").Len(); n != 2 {
		t.Errorf("%d failed counts logged, want 2", n)
	}
	cancel()
	<-done
}

// TestRequestsByOutcome: each request is counted by its outcome and
// status, and timed by its outcome; after the first of a kind, counting
// one allocates nothing.
func TestRequestsByOutcome(t *testing.T) {
	t.Parallel()
	m := New()
	m.Request("forwarded", 201, 2*time.Millisecond)
	m.Request("forwarded", 201, 3*time.Millisecond)
	m.Request("forwarded", 502, time.Millisecond)
	m.Request("invalid_token", 401, time.Millisecond)
	m.Request("answered", 1000, time.Millisecond) // out of range: "other"
	text := scrape(t, m)
	wantLine(t, text, `authsidecar_requests_total{code="201",outcome="forwarded"} 2`)
	wantLine(t, text, `authsidecar_requests_total{code="502",outcome="forwarded"} 1`)
	wantLine(t, text, `authsidecar_requests_total{code="401",outcome="invalid_token"} 1`)
	wantLine(t, text, `authsidecar_requests_total{code="other",outcome="answered"} 1`)
	wantLine(t, text, `authsidecar_request_duration_seconds_count{outcome="forwarded"} 3`)
	wantLine(t, text, `authsidecar_request_duration_seconds_sum{outcome="forwarded"} 0.006`)
}

// TestCountingARequestDoesNotAllocate: it runs on every request. (Not
// parallel: AllocsPerRun counts the whole process's allocations.)
func TestCountingARequestDoesNotAllocate(t *testing.T) {
	m := New()
	m.Request("forwarded", 201, time.Millisecond)
	if a := testing.AllocsPerRun(100, func() { m.Request("forwarded", 201, time.Millisecond) }); a != 0 {
		t.Errorf("%v allocations per request counted, want 0", a)
	}
}

func TestHashSlotsAreReadAtScrapeTime(t *testing.T) {
	t.Parallel()
	m := New()
	var busy, queued atomic.Int64
	m.HashSlots(3, func() int { return int(busy.Load()) }, func() int { return int(queued.Load()) })
	busy.Store(2)
	queued.Store(5)
	text := scrape(t, m)
	wantLine(t, text, `authsidecar_hash_slots 3`)
	wantLine(t, text, `authsidecar_hash_slots_busy 2`)
	wantLine(t, text, `authsidecar_hash_queue_length 5`)
	busy.Store(0)
	wantLine(t, scrape(t, m), `authsidecar_hash_slots_busy 0`)
}

// TestDBPoolStatistics reads a real pool's statistics.
func TestDBPoolStatistics(t *testing.T) {
	t.Parallel()
	pool := testkit.Pool(t)
	m := New()
	m.DBPool(pool.Stat)
	conn, err := pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	text := scrape(t, m)
	wantLine(t, text, `authsidecar_db_pool_connections{state="acquired"} 1`)
	wantLine(t, text, fmt.Sprintf(`authsidecar_db_pool_max_connections %d`, pool.Stat().MaxConns()))
	for _, name := range []string{"authsidecar_db_pool_acquires_total", "authsidecar_db_pool_acquire_waits_total",
		"authsidecar_db_pool_acquire_wait_seconds_total", "authsidecar_db_pool_canceled_acquires_total",
		`authsidecar_db_pool_connections{state="idle"}`, `authsidecar_db_pool_connections{state="constructing"}`} {
		if !strings.Contains(text, "\n"+name+" ") {
			t.Errorf("no %s in the scrape", name)
		}
	}
	conn.Release()
	wantLine(t, scrape(t, m), `authsidecar_db_pool_connections{state="acquired"} 0`)
}

type answer struct {
	status int
	err    error
}

func (a answer) RoundTrip(*http.Request) (*http.Response, error) {
	if a.err != nil {
		return nil, a.err
	}
	return &http.Response{StatusCode: a.status, Body: io.NopCloser(strings.NewReader(""))}, nil
}

func TestTransportTimesByUpstreamStatus(t *testing.T) {
	t.Parallel()
	m := New()
	for _, a := range []answer{{status: 201}, {status: 201}, {status: 503}, {err: errors.New("refused")}} {
		req := httptest.NewRequest("GET", "http://upstream/", nil)
		if resp, err := m.Transport(a).RoundTrip(req); err == nil {
			resp.Body.Close()
		}
	}
	text := scrape(t, m)
	wantLine(t, text, `authsidecar_upstream_duration_seconds_count{code="201"} 2`)
	wantLine(t, text, `authsidecar_upstream_duration_seconds_count{code="503"} 1`)
	wantLine(t, text, `authsidecar_upstream_duration_seconds_count{code="error"} 1`)
}

func TestQueryKinds(t *testing.T) {
	t.Parallel()
	for sql, want := range map[string]string{
		"SELECT 1": "select", "  insert into x": "insert", "UPDATE x": "update", "delete from x": "delete",
		"WITH a AS (select 1) select": "with", "select(1)": "select", "LISTEN x": "listen",
		"VACUUM": "other", "": "other", "begin": "begin",
	} {
		if got := firstWord(sql); got != want {
			t.Errorf("firstWord(%q) = %q, want %q", sql, got, want)
		}
	}
}
