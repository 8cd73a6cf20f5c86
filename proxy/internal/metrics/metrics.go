// Package metrics defines the proxy's Prometheus metrics in one place, so
// that their names — which dashboards and alerts depend on — are easy to
// find and never registered twice.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the proxy's metrics. A nil *Metrics records nothing, so that
// packages can be used (and tested) without a registry.
type Metrics struct {
	reg *prometheus.Registry

	logins        *prometheus.CounterVec
	lockouts      prometheus.Counter
	sessions      *prometheus.CounterVec
	cache         *prometheus.CounterVec
	tokenHit      prometheus.Counter
	tokenMiss     prometheus.Counter
	sessionHit    prometheus.Counter
	sessionMiss   prometheus.Counter
	notifications prometheus.Counter
	listenerUp    prometheus.Gauge
	dbQueries     *prometheus.HistogramVec
	upstream      *prometheus.HistogramVec
}

// New creates the metrics on a registry of their own, with the Go runtime
// and process collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{reg: reg}
	m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authsidecar_logins_total", Help: "Login attempts by result.",
	}, []string{"result"})
	m.lockouts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "authsidecar_lockouts_total", Help: "Accounts locked after repeated failed logins.",
	})
	m.sessions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authsidecar_sessions_total", Help: "Session events: created, refreshed, revoked, expired, cleaned.",
	}, []string{"event"})
	m.cache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authsidecar_cache_requests_total", Help: "Lookups in the verified-token and session caches.",
	}, []string{"cache", "result"})
	m.tokenHit, m.tokenMiss = m.cache.WithLabelValues("token", "hit"), m.cache.WithLabelValues("token", "miss")
	m.sessionHit, m.sessionMiss = m.cache.WithLabelValues("session", "hit"), m.cache.WithLabelValues("session", "miss")
	m.notifications = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "authsidecar_revocation_notifications_total", Help: "Session change notifications received from the database.",
	})
	m.listenerUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "authsidecar_listener_up", Help: "1 while this replica listens for session changes (and may cache sessions).",
	})
	m.dbQueries = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "authsidecar_db_query_duration_seconds", Help: "Database queries by statement kind.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"op"})
	m.upstream = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "authsidecar_upstream_duration_seconds", Help: "Forwarded requests by upstream status (\"error\" when unreachable).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"code"})
	for _, c := range []prometheus.Collector{m.logins, m.lockouts, m.sessions, m.cache, m.notifications, m.listenerUp, m.dbQueries, m.upstream} {
		f(c)
	}
	// Pre-create the label values operators alert on, so that a rate() over
	// them exists from the start.
	for _, r := range []string{"success", "invalid_credentials", "locked_out", "invalid_request", "unavailable"} {
		m.logins.WithLabelValues(r)
	}
	for _, e := range []string{"created", "refreshed", "revoked", "expired", "cleaned"} {
		m.sessions.WithLabelValues(e)
	}
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// LiveSessions registers a gauge that counts live sessions at scrape time.
func (m *Metrics) LiveSessions(count func(ctx context.Context) (int64, error)) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "authsidecar_sessions_live", Help: "Sessions neither expired nor revoked (counted in the database at scrape time).",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(Untraced(context.Background()), 2*time.Second)
		defer cancel()
		n, err := count(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	}))
}

// Login counts a login attempt's result.
func (m *Metrics) Login(result string) {
	if m != nil {
		m.logins.WithLabelValues(result).Inc()
	}
}

// Lockout counts an account locked.
func (m *Metrics) Lockout() {
	if m != nil {
		m.lockouts.Inc()
	}
}

// Session counts n session events.
func (m *Metrics) Session(event string, n int64) {
	if m != nil && n > 0 {
		m.sessions.WithLabelValues(event).Add(float64(n))
	}
}

// TokenCache counts a verified-token cache lookup.
func (m *Metrics) TokenCache(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.tokenHit.Inc()
	} else {
		m.tokenMiss.Inc()
	}
}

// SessionCache counts a session cache lookup.
func (m *Metrics) SessionCache(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.sessionHit.Inc()
	} else {
		m.sessionMiss.Inc()
	}
}

// Notification counts a session change notification received.
func (m *Metrics) Notification() {
	if m != nil {
		m.notifications.Inc()
	}
}

// ListenerUp records whether the replica listens for session changes.
func (m *Metrics) ListenerUp(up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.listenerUp.Set(v)
}

// QueryTracer returns a pgx tracer that times every query, labelled by its
// first keyword (select, insert, update, delete, with, …).
func (m *Metrics) QueryTracer() pgx.QueryTracer {
	if m == nil {
		return nil
	}
	return queryTracer{m.dbQueries}
}

type queryTracer struct{ h *prometheus.HistogramVec }

type queryStartKey struct{}

type untracedKey struct{}

// Untraced marks ctx so that its queries are not counted: a scrape's own
// query is not work the proxy did for a request.
func Untraced(ctx context.Context) context.Context {
	return context.WithValue(ctx, untracedKey{}, true)
}

type queryStart struct {
	at time.Time
	op string
}

func (q queryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if ctx.Value(untracedKey{}) != nil {
		return ctx
	}
	return context.WithValue(ctx, queryStartKey{}, queryStart{at: time.Now(), op: firstWord(data.SQL)})
}

func (q queryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	if s, ok := ctx.Value(queryStartKey{}).(queryStart); ok {
		q.h.WithLabelValues(s.op).Observe(time.Since(s.at).Seconds())
	}
}

func firstWord(sql string) string {
	sql = strings.TrimSpace(sql)
	if i := strings.IndexAny(sql, " \t\n("); i > 0 {
		sql = sql[:i]
	}
	switch w := strings.ToLower(sql); w {
	case "select", "insert", "update", "delete", "with", "begin", "commit", "rollback", "listen":
		return w
	}
	return "other"
}

// Transport wraps an upstream transport to time each forwarded request by
// the upstream's status.
func (m *Metrics) Transport(next http.RoundTripper) http.RoundTripper {
	if m == nil {
		return next
	}
	return &roundTripper{next: next, h: m.upstream}
}

type roundTripper struct {
	next http.RoundTripper
	h    *prometheus.HistogramVec
	// byCode caches each status code's observer: looking a label value up
	// in the vector hashes and locks on every request.
	byCode sync.Map // int → prometheus.Observer
}

func (rt *roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := rt.next.RoundTrip(r)
	code := 0 // unreachable upstream
	if err == nil {
		code = resp.StatusCode
	}
	rt.observer(code).Observe(time.Since(start).Seconds())
	return resp, err
}

func (rt *roundTripper) observer(code int) prometheus.Observer {
	if o, ok := rt.byCode.Load(code); ok {
		return o.(prometheus.Observer)
	}
	label := "error"
	if code != 0 {
		label = strconv.Itoa(code)
	}
	o, _ := rt.byCode.LoadOrStore(code, rt.h.WithLabelValues(label))
	return o.(prometheus.Observer)
}
