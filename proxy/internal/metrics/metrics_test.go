package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
	m.Notification()
	m.ListenerUp(true)
	m.LiveSessions(func(context.Context) (int64, error) { return 0, nil })
	if m.Transport(http.DefaultTransport) != http.DefaultTransport {
		t.Fatal("a nil Metrics wrapped the transport")
	}
}

func TestLiveSessionsGaugeSaysWhenTheCountFails(t *testing.T) {
	t.Parallel()
	m := New()
	var fail bool
	m.LiveSessions(func(context.Context) (int64, error) {
		if fail {
			return 0, errors.New("down")
		}
		return 7, nil
	})
	wantLine(t, scrape(t, m), `authsidecar_sessions_live 7`)
	fail = true
	wantLine(t, scrape(t, m), `authsidecar_sessions_live -1`)
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
