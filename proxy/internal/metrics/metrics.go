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
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
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
	sessionBypass prometheus.Counter
	notifications prometheus.Counter
	listenerUp    prometheus.Gauge
	dbQueries     *prometheus.HistogramVec
	upstream      *prometheus.HistogramVec
	requests      *prometheus.CounterVec
	requestTime   *prometheus.HistogramVec
	// byRequest caches each outcome and status code's counter and
	// observer, copied on write: looking a label value up in a vector
	// hashes and locks on every request, a map read does neither.
	byRequest   atomic.Pointer[map[requestKey]requestObservers]
	byRequestMu sync.Mutex
	liveCount   liveSessions
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
	m.sessionBypass = m.cache.WithLabelValues("session", "bypass")
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
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authsidecar_requests_total",
		Help: "Requests on the proxy's port by outcome (forwarded, answered, or the error code it answered) and the status code sent.",
	}, []string{"outcome", "code"})
	m.requestTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "authsidecar_request_duration_seconds", Help: "Time from a request's arrival to the end of its answer, by outcome.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"outcome"})
	m.byRequest.Store(&map[requestKey]requestObservers{})
	m.liveCount.desc = prometheus.NewDesc("authsidecar_sessions_live",
		"Sessions neither expired nor revoked, as last counted in the store (see LiveSessions for how often).", nil, nil)
	for _, c := range []prometheus.Collector{m.logins, m.lockouts, m.sessions, m.cache, m.notifications, m.listenerUp, m.dbQueries,
		m.upstream, m.requests, m.requestTime, &m.liveCount} {
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

// LiveSessions keeps authsidecar_sessions_live up to date until ctx ends:
// it counts at once and then every interval, in the background, so that a
// scrape never runs a count over the whole sessions table (several
// Prometheus servers scraping every few seconds would). The gauge is
// therefore up to one interval old; it appears after the first count, and
// a count that fails keeps the last one (and is logged).
func (m *Metrics) LiveSessions(ctx context.Context, every time.Duration, count func(ctx context.Context) (int64, error), log *zap.Logger) {
	if m == nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		// Untraced: the count is not work the proxy does for a request.
		cctx, cancel := context.WithTimeout(Untraced(ctx), every)
		n, err := count(cctx)
		cancel()
		switch {
		case err == nil:
			m.liveCount.set(n)
		case ctx.Err() == nil:
			log.Warn("live sessions not counted; the gauge keeps the last count", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// liveSessions is the gauge of the last count of live sessions: absent
// until the first count, rather than a 0 that no count said.
type liveSessions struct {
	desc    *prometheus.Desc
	counted atomic.Bool
	n       atomic.Int64
}

func (l *liveSessions) set(n int64) { l.n.Store(n); l.counted.Store(true) }

func (l *liveSessions) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

func (l *liveSessions) Collect(ch chan<- prometheus.Metric) {
	if l.counted.Load() {
		ch <- prometheus.MustNewConstMetric(l.desc, prometheus.GaugeValue, float64(l.n.Load()))
	}
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

// SessionCacheBypassed counts a session checked in the store because the
// cache is failing closed: the replica does not hear session changes (its
// listener is down), so its cache may not answer.
func (m *Metrics) SessionCacheBypassed() {
	if m != nil {
		m.sessionBypass.Inc()
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

// requestKey is one series of the request metrics.
type requestKey struct {
	outcome string
	code    int
}

type requestObservers struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// Request counts a request on the proxy's port that took d: its outcome
// (what the proxy did with it: "forwarded", "answered" by one of its own
// routes, or the error code of the JSON body it answered with) and the
// status code it sent. Outcomes are a short fixed list and codes are
// bounded, so the series are few; after the first request of each, this
// does not allocate.
func (m *Metrics) Request(outcome string, code int, d time.Duration) {
	if m == nil {
		return
	}
	if code < 100 || code > 599 {
		code = 0 // counted as "other": a client cannot grow the series
	}
	k := requestKey{outcome, code}
	o, ok := (*m.byRequest.Load())[k]
	if !ok {
		o = m.requestObservers(k)
	}
	o.count.Inc()
	o.duration.Observe(d.Seconds())
}

// requestObservers adds k's observers to the cache, copying it.
func (m *Metrics) requestObservers(k requestKey) requestObservers {
	m.byRequestMu.Lock()
	defer m.byRequestMu.Unlock()
	old := *m.byRequest.Load()
	if o, ok := old[k]; ok {
		return o
	}
	label := "other"
	if k.code != 0 {
		label = strconv.Itoa(k.code)
	}
	o := requestObservers{count: m.requests.WithLabelValues(k.outcome, label), duration: m.requestTime.WithLabelValues(k.outcome)}
	next := make(map[requestKey]requestObservers, len(old)+1)
	for kk, v := range old {
		next[kk] = v
	}
	next[k] = o
	m.byRequest.Store(&next)
	return o
}

// HashSlots exports the password hasher's state, read at each scrape:
// how many hashes may run at once, how many slots are taken (hashing, or
// resting after a hash), and how many logins wait for one.
func (m *Metrics) HashSlots(slots int, busy, queued func() int) {
	if m == nil {
		return
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authsidecar_hash_slots", Help: "Password hashes that may run at once.",
		}, func() float64 { return float64(slots) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authsidecar_hash_slots_busy", Help: "Hash slots taken: hashing, or resting after a hash.",
		}, func() float64 { return float64(busy()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authsidecar_hash_queue_length", Help: "Logins waiting for a free hash slot.",
		}, func() float64 { return float64(queued()) }),
	)
}

// DBPool exports the PostgreSQL connection pool's statistics, read at each
// scrape from stat (pgxpool.Pool.Stat).
func (m *Metrics) DBPool(stat func() *pgxpool.Stat) {
	if m != nil {
		m.reg.MustRegister(poolCollector{stat})
	}
}

var (
	poolConns = prometheus.NewDesc("authsidecar_db_pool_connections",
		"Connections of the database pool by state: acquired (in use), idle, constructing.", []string{"state"}, nil)
	poolMax = prometheus.NewDesc("authsidecar_db_pool_max_connections",
		"The most connections the database pool opens.", nil, nil)
	poolAcquires = prometheus.NewDesc("authsidecar_db_pool_acquires_total",
		"Connections taken from the database pool.", nil, nil)
	poolWaits = prometheus.NewDesc("authsidecar_db_pool_acquire_waits_total",
		"Connections taken from the database pool that had to wait: none was idle.", nil, nil)
	poolWaitTime = prometheus.NewDesc("authsidecar_db_pool_acquire_wait_seconds_total",
		"Time spent waiting for a database connection when none was idle.", nil, nil)
	poolCanceled = prometheus.NewDesc("authsidecar_db_pool_canceled_acquires_total",
		"Waits for a database connection that ended with the request (canceled or timed out).", nil, nil)
)

type poolCollector struct{ stat func() *pgxpool.Stat }

func (poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolConns, poolMax, poolAcquires, poolWaits, poolWaitTime, poolCanceled} {
		ch <- d
	}
}

func (p poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := p.stat()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(poolConns, float64(s.AcquiredConns()), "acquired")
	gauge(poolConns, float64(s.IdleConns()), "idle")
	gauge(poolConns, float64(s.ConstructingConns()), "constructing")
	gauge(poolMax, float64(s.MaxConns()))
	counter(poolAcquires, float64(s.AcquireCount()))
	counter(poolWaits, float64(s.EmptyAcquireCount()))
	counter(poolWaitTime, s.EmptyAcquireWaitTime().Seconds())
	counter(poolCanceled, float64(s.CanceledAcquireCount()))
}
