package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/token"
)

// proxiedPath is any path the proxy does not own: it is forwarded.
const proxiedPath = "/api/anything"

// connLevels are the connection counts of the throughput runs.
var connLevels = []int{1, 32, 128}

// scenarioNames are the names -only accepts, in the order measure runs them.
var scenarioNames = []string{"throughput", "logins", "revocation", "flood", "tables", "memory", "replicas"}

// optIn are the scenarios only -only runs: they take longer than the rest
// of a run is worth (the replicas scenario starts twenty proxies).
var optIn = map[string]bool{"replicas": true}

// measure runs every scenario in an order that keeps the sessions table
// small (about a thousand rows) until the large-table part at the end.
func (b *bench) measure(ctx context.Context) (*report, error) {
	rep := &report{date: time.Now(), opts: b.opts}
	rep.machine = describeMachine(ctx, b.db)
	steps := []struct {
		scenario, name string
		run            func(context.Context, *report) error
	}{
		{"throughput", "throughput", b.throughput},
		{"logins", "logins", b.logins},
		{"revocation", "revocation", b.revocation},
		{"flood", "login flood", b.flood},
		{"tables", "lookups with a small table", func(ctx context.Context, r *report) error { return b.tableSize(ctx, r, false) }},
		{"memory", "memory per cached session", b.memory},
		{"tables", "lookups with a large table", func(ctx context.Context, r *report) error { return b.tableSize(ctx, r, true) }},
		{"replicas", "revocation across many replicas", b.replicas},
	}
	for _, s := range steps {
		if !rep.ran(s.scenario) {
			continue
		}
		if err := s.run(ctx, rep); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return rep, nil
}

// run is a load run with the bench's durations.
func (b *bench) run(ctx context.Context, addr string, conns int, request func(int, int) []byte) (measurement, error) {
	return runLoad(ctx, load{addr: addr, conns: conns, warmup: b.opts.warmup, duration: b.opts.duration, request: request})
}

// rounds: each throughput target is measured in this many slices,
// interleaved with the other targets, so that a change in the machine's
// background load during the run (it is shared) affects every target alike
// instead of whichever ran at that moment. On two shared cores, one
// second's throughput varies by ±10 % from one second to the next; with
// three rounds the ratio to the bare proxy still moved by as much from
// run to run, so there are six, each shorter.
const rounds = 6

// loadTarget is one thing the throughput runs measure.
type loadTarget struct {
	name string
	addr string
	proc *proc // the process answering the load generator
	// request is what the target is sent; nil: the proxied GET.
	request []byte
}

// verifyName is the forward-auth row: the caching proxy asked about the
// proxied GET at /api/auth/verify, as an ingress would ask.
const verifyName = "authsidecar verify (forward-auth)"

// verifyRequest is an ingress's question about the proxied GET.
func (b *bench) verifyRequest() []byte {
	req := rawRequest("GET", b.a.addr, "/api/auth/verify", b.token, nil)
	// The original method and URI, as Traefik and Caddy send them.
	return bytes.Replace(req, []byte("\r\n\r\n"), []byte("\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Uri: "+proxiedPath+"\r\n\r\n"), 1)
}

// roundOrder is the order of the targets in round r: the caches-off
// proxy, which keeps PostgreSQL busy, first, so that whatever work it
// leaves behind falls on the others alike; then the two that the targets
// compare, the bare proxy and authsidecar with caches, next to each
// other, each first in every other round; then the arms (32 connections
// only), then direct.
func (b *bench) roundOrder(r, conns int) []loadTarget {
	bare := loadTarget{"bare reverse proxy", b.bare, b.bareProc, nil}
	cached := loadTarget{"authsidecar (caches)", b.a.addr, b.a.proc, nil}
	order := []loadTarget{{"authsidecar (caches off)", b.off.addr, b.off.proc, nil}, bare, cached}
	if r%2 == 1 {
		order[1], order[2] = cached, bare
	}
	if conns == 1 || conns == 32 {
		order = append(order, loadTarget{verifyName, b.a.addr, b.a.proc, b.verifyRequest()})
	}
	if conns == armConns {
		for _, a := range b.arms {
			order = append(order, loadTarget{a.name, a.proxy.addr, a.proxy.proc, nil})
		}
	}
	return append(order, loadTarget{"direct", b.upstream, b.upProc, nil})
}

// armConns is the connection count at which the arms run: the one the
// throughput target is set at.
const armConns = 32

// throughput: the same authenticated GET, direct to the upstream, through
// the bare proxy, through authsidecar with and without caches, and
// through each arm, at each connection count. Around the 32-connection
// runs on the caching proxy it counts database queries.
func (b *bench) throughput(ctx context.Context, rep *report) error {
	for _, conns := range connLevels {
		names := []string{}
		parts := map[string][]measurement{}
		cpu := map[string]time.Duration{}
		cpuKnown := true
		queriesBefore, err := scrape(b.a.metricsAddr, metricDBQueries)
		if err != nil {
			return err
		}
		for r := range rounds {
			order := b.roundOrder(r, conns)
			if r == 0 {
				b.logf("throughput: %d conns, %d rounds over %d targets", conns, rounds, len(order))
			}
			for _, t := range order {
				if r == 0 {
					names = append(names, t.name)
				}
				req := t.request
				if req == nil {
					req = rawRequest("GET", t.addr, proxiedPath, b.token, nil)
				}
				cpu0, err0 := t.proc.cpuTime()
				m, err := runLoad(ctx, load{
					addr: t.addr, conns: conns, warmup: roundWarmup(b.opts), duration: b.opts.duration / rounds,
					request: same(req),
				})
				if err != nil {
					return fmt.Errorf("%s, %d conns: %w", t.name, conns, err)
				}
				cpu1, err1 := t.proc.cpuTime()
				cpu[t.name] += cpu1 - cpu0
				cpuKnown = cpuKnown && err0 == nil && err1 == nil
				parts[t.name] = append(parts[t.name], m)
			}
		}
		// Rows in a fixed order: direct, bare, caches, caches off, arms.
		slices.SortStableFunc(names, func(x, y string) int { return rowRank(x) - rowRank(y) })
		for _, name := range names {
			m := merge(parts[name]...)
			r := row{name: name, conns: conns, m: m}
			if cpuKnown {
				// Over whole rounds, so per request sent, warm-ups included.
				r.cpuPerReq = cpu[name] / time.Duration(m.total)
			}
			rep.throughput = append(rep.throughput, r)
			if (name == "authsidecar (caches)" || name == verifyName) && conns == 32 {
				// Both ask the caching proxy: every request either sent
				// counts, the warm-ups' too, as queries were counted over
				// all the rounds.
				rep.queryRequests += m.total
			}
		}
		if conns == 32 {
			queriesAfter, err := scrape(b.a.metricsAddr, metricDBQueries)
			if err != nil {
				return err
			}
			rep.queries = queriesAfter - queriesBefore
		}
	}
	return nil
}

// rowRank orders the throughput rows.
func rowRank(name string) int {
	switch name {
	case "direct":
		return 0
	case "bare reverse proxy":
		return 1
	case "authsidecar (caches)":
		return 2
	case "authsidecar (caches off)":
		return 3
	case verifyName:
		return 4
	}
	return 5
}

const metricDBQueries = "authsidecar_db_query_duration_seconds_count"

// loginRequests returns a request function for logins: connection i uses
// account i mod len(accounts); with wrongEvery > 0 every wrongEvery-th
// attempt of a connection has a wrong password, the connections out of
// step so that even a short run has its share of wrong ones.
func loginRequests(host string, accounts []account, wrongEvery int) func(int, int) []byte {
	right := make([][]byte, len(accounts))
	wrong := make([][]byte, len(accounts))
	for i, a := range accounts {
		right[i] = rawRequest("POST", host, "/api/auth/login", "", loginBody(a, a.password))
		wrong[i] = rawRequest("POST", host, "/api/auth/login", "", loginBody(a, a.password+"0"))
	}
	return func(conn, n int) []byte {
		i := conn % len(accounts)
		if wrongEvery > 0 && (n+conn)%wrongEvery == wrongEvery-1 {
			return wrong[i]
		}
		return right[i]
	}
}

func loginBody(a account, password string) []byte {
	body, _ := json.Marshal(map[string]string{"deviceId": a.device, "username": a.username, "password": password})
	return body
}

// login logs a in and returns the token.
func login(c *client, host string, a account) (string, error) {
	status, body, err := c.once(rawRequest("POST", host, "/api/auth/login", "", loginBody(a, a.password)))
	if err != nil {
		return "", fmt.Errorf("login %s: %w", a.username, err)
	}
	if status != 200 {
		return "", fmt.Errorf("login %s: status %d: %s", a.username, status, body)
	}
	var lb struct{ Token string }
	if err := json.Unmarshal(body, &lb); err != nil || lb.Token == "" {
		return "", fmt.Errorf("login %s: no token in %s", a.username, body)
	}
	return lb.Token, nil
}

// logins: concurrent clients logging in with the right password. argon2id
// at the OWASP parameters makes each cost tens of milliseconds of a core,
// and the proxy bounds how many run at once; what does not get a slot in
// time is answered 503 (busy), which is counted, not hidden.
func (b *bench) logins(ctx context.Context, rep *report) error {
	for _, clients := range []int{4, 32} {
		b.logf("logins: %d clients", clients)
		m, err := b.run(ctx, b.a.addr, clients, loginRequests(b.a.addr, b.accounts, 0))
		if err != nil {
			return err
		}
		if m.status[200] == 0 {
			return fmt.Errorf("%d clients: no login succeeded: %s", clients, m.statuses())
		}
		rep.logins = append(rep.logins, row{name: "logins", conns: clients, m: m})
	}
	return nil
}

// revocationTimeout bounds the wait for one revocation to reach replica B;
// a timeout is recorded as this long (a lower bound) and counted.
const revocationTimeout = 2 * time.Second

// revocation: a second caching replica B on the same database. For each
// round: log in on A, make B cache the session, log out on A and poll B
// with the token until it refuses it. The time is from sending the logout
// to B's first 401; polling starts with the logout (not after its answer),
// so that the time is the propagation, not a round trip more.
func (b *bench) revocation(ctx context.Context, rep *report) error {
	b.logf("revocation: starting replica B")
	replica, err := b.startProxy(ctx, "authsidecar (replica B)", nil)
	if err != nil {
		return err
	}
	defer replica.stop()
	b.logf("revocation: %d logouts on A polled on B", b.opts.revocations)
	onA, logoutA, onB := newClient(b.a.addr), newClient(b.a.addr), newClient(replica.addr)
	defer onA.close()
	defer logoutA.close()
	defer onB.close()
	// A baseline taken in the same rounds: the commit of a revoking UPDATE
	// sent by the bench itself, which is what the logout waits for.
	spare, err := b.db.insertSessions(ctx, b.user, b.opts.revocations, time.Now().Add(time.Hour), 0, true)
	if err != nil {
		return err
	}
	times := make([]time.Duration, 0, b.opts.revocations)
	logouts := make([]time.Duration, 0, b.opts.revocations) // the logout's own answer time on A
	commits := make([]time.Duration, 0, b.opts.revocations)
	timeouts := 0
	deadline := time.Now().Add(2 * time.Minute) // bounded in time as well as in count
	for i := 0; i < b.opts.revocations && time.Now().Before(deadline); i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		tok, err := login(onA, b.a.addr, b.accounts[i%len(b.accounts)])
		if err != nil {
			return err
		}
		get := rawRequest("GET", replica.addr, proxiedPath, tok, nil)
		if status, body, err := onB.once(get); err != nil || status/100 != 2 {
			return fmt.Errorf("warm the token on B: status %d %s: %w", status, body, err)
		}
		logout := rawRequest("POST", b.a.addr, "/api/auth/logout", tok, []byte{})
		logoutErr := make(chan error, 1)
		var logoutTook time.Duration
		t0 := time.Now()
		go func() {
			status, body, err := logoutA.once(logout)
			logoutTook = time.Since(t0)
			if err == nil && status != 204 {
				err = fmt.Errorf("logout on A: status %d: %s", status, body)
			}
			logoutErr <- err
		}()
		var took time.Duration
		for {
			status, _, err := onB.do(get)
			if err != nil {
				<-logoutErr
				return fmt.Errorf("poll B: %w", err)
			}
			if status == 401 {
				took = time.Since(t0)
				break
			}
			if status/100 != 2 {
				<-logoutErr
				return fmt.Errorf("poll B: unexpected status %d", status)
			}
			if took = time.Since(t0); took > revocationTimeout {
				timeouts++
				break
			}
		}
		if err := <-logoutErr; err != nil {
			return err
		}
		times, logouts = append(times, took), append(logouts, logoutTook)

		t1 := time.Now()
		if _, err := b.db.conn.Exec(ctx, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, spare[i]); err != nil {
			return fmt.Errorf("revoking update: %w", err)
		}
		commits = append(commits, time.Since(t1))
	}
	rep.revocation = aggregate([]connResult{{latencies: times}}, 0)
	rep.logout = aggregate([]connResult{{latencies: logouts}}, 0)
	rep.revokeCommit = aggregate([]connResult{{latencies: commits}}, 0)
	rep.revocationTimeouts = timeouts
	return nil
}

// flood: proxied p99 at 32 connections at rest, and while 32 clients
// flood the login endpoint (one attempt in four with a wrong
// password), so that the flood keeps costing password hashes instead of
// being refused cheaply by a lockout. The proxy counts an attempt towards
// the lockout when it starts, and a success resets the count; a client's
// wrong attempt is always followed by a right one, so each client adds at
// most two to its account's count (a failure and the attempt in flight).
// Two clients per account (sixteen accounts) stay at four or fewer, below
// the default five that lock an account.

// floodRate is the proxied traffic's rate during the login-flood scenario.
const floodRate = 1000

// floodRounds: the login-flood scenario alternates this many slices at
// rest with as many during a flood. A p99 at 1000 requests/s rests on the
// slowest few dozen requests; with three slices a side it moved from ×0.9
// to ×1.6 between runs of the same binaries, so there are six.
const floodRounds = 6

// floodSlice is how long each slice of the login-flood scenario records.
func floodSlice(o options) time.Duration { return o.duration / 3 }

func (b *bench) flood(ctx context.Context, rep *report) error {
	// At rest and during the flood in alternating slices (floodRounds of
	// each), merged per side: a drift or a blip in the machine's background
	// load then weighs on both sides alike instead of on whichever was
	// running at that moment. The proxied traffic is an open loop at
	// floodRate requests per second (well below what the machine can
	// serve): the question is what a flood of logins does to ordinary
	// traffic, not to a proxy already saturated by the load generator,
	// where any extra work must show.
	req := same(rawRequest("GET", b.a.addr, proxiedPath, b.token, nil))
	perConn := float64(floodRate) / 32
	slice := floodSlice(b.opts)
	proxied := func() (measurement, error) {
		return runLoad(ctx, load{addr: b.a.addr, conns: 32, warmup: b.opts.warmup / floodRounds, duration: slice, request: req, rate: perConn})
	}
	lead := 500 * time.Millisecond // the flood is at full strength before recording starts
	var rests, floods, logins []measurement
	for r := range floodRounds {
		b.logf("login flood: round %d of %d, at rest", r+1, floodRounds)
		rest, err := proxied()
		if err != nil {
			return err
		}
		b.logf("login flood: round %d of %d, during the flood", r+1, floodRounds)
		var flood measurement
		var floodErr error
		var wg sync.WaitGroup
		wg.Go(func() {
			flood, floodErr = runLoad(ctx, load{
				addr: b.a.addr, conns: 32, duration: lead + b.opts.warmup/floodRounds + slice + lead,
				request: loginRequests(b.a.addr, b.accounts, 4),
			})
		})
		select {
		case <-ctx.Done():
		case <-time.After(lead):
		}
		during, err := proxied()
		wg.Wait()
		if err != nil {
			return err
		}
		if floodErr != nil {
			return fmt.Errorf("flood: %w", floodErr)
		}
		rests, floods, logins = append(rests, rest), append(floods, during), append(logins, flood)
		// The slots rest after the flood (see password.Options.Share):
		// the next slice at rest starts with none of its work pending.
		select {
		case <-ctx.Done():
		case <-time.After(lead):
		}
	}
	rep.rest, rep.flooded, rep.floodLogins = merge(rests...), merge(floods...), merge(logins...)
	return nil
}

// tableSize: session lookups (the caches-off proxy checks every request in
// the database) and logins, one client each, with about a thousand rows in
// sessions (large false) or with opts.bigRows (large true). Lookups rotate
// over a thousand random live sessions, so that they touch the table and
// its index in many places rather than one hot row.
func (b *bench) tableSize(ctx context.Context, rep *report, large bool) error {
	want := int64(1000)
	if large {
		want = int64(b.opts.bigRows)
	}
	n, err := b.db.countSessions(ctx)
	if err != nil {
		return err
	}
	if n < want {
		b.logf("sessions: %d rows, inserting %d", n, want-n)
		// Half of them expired (and not cleaned up yet), half live: what a
		// table between two janitor rounds holds. In statements of at most
		// 250k rows, so that one is never minutes long.
		for left := want - n; left > 0; {
			chunk := min(left, 250_000)
			if _, err := b.db.insertSessions(ctx, b.user, int(chunk), time.Now().Add(24*time.Hour), 2, false); err != nil {
				return err
			}
			left -= chunk
		}
		// VACUUM as well as ANALYZE: otherwise autovacuum would start on the
		// fresh rows in the middle of the measurement, on the same two cores.
		b.logf("sessions: VACUUM ANALYZE")
		if _, err := b.db.conn.Exec(ctx, "VACUUM (ANALYZE) sessions"); err != nil {
			return fmt.Errorf("vacuum analyze sessions: %w", err)
		}
		if n, err = b.db.countSessions(ctx); err != nil {
			return err
		}
	}
	live, err := b.db.randomLiveSessions(ctx, 1000)
	if err != nil {
		return err
	}
	reqs := make([][]byte, len(live))
	for i, s := range live {
		tok, err := b.signer.Sign(token.Claims{
			SessionID: s.id, Subject: s.userID, DeviceID: s.deviceID, ExpiresAt: s.expiresAt,
		})
		if err != nil {
			return err
		}
		reqs[i] = rawRequest("GET", b.off.addr, proxiedPath, tok, nil)
	}
	b.logf("lookups with %d rows: caches-off proxy, 1 conn", n)
	lookups, err := b.run(ctx, b.off.addr, 1, func(_, i int) []byte { return reqs[i%len(reqs)] })
	if err != nil {
		return err
	}
	if lookups.success() != lookups.count() {
		return fmt.Errorf("lookups with %d rows: %s", n, lookups.statuses())
	}
	b.logf("logins with %d rows: 1 client", n)
	logins, err := b.run(ctx, b.a.addr, 1, loginRequests(b.a.addr, b.accounts, 0))
	if err != nil {
		return err
	}
	if large {
		rep.rowsLarge, rep.lookupLarge, rep.loginLarge = n, lookups, logins
	} else {
		rep.rowsSmall, rep.lookupSmall, rep.loginSmall = n, lookups, logins
	}
	return nil
}

// memoryFillConns is how many connections fill the caches.
const memoryFillConns = 8

// memory: sessions inserted directly and tokens signed by the bench; a
// fresh caching proxy with GOGC=10, so that little garbage is counted in
// its heap; its heap before and after one request per token (each caches
// a verified token and a session). The difference per session is what a
// cached session costs.
func (b *bench) memory(ctx context.Context, rep *report) error {
	n := b.opts.memSessions
	b.logf("memory: inserting %d sessions and signing their tokens", n)
	expires := time.Now().Add(time.Hour).Truncate(time.Second) // a token's exp is whole seconds
	ids, err := b.db.insertSessions(ctx, b.user, n, expires, 0, true)
	if err != nil {
		return err
	}
	tokens, err := b.signAll(ids, expires)
	if err != nil {
		return err
	}
	proxy, err := b.startProxy(ctx, "authsidecar (GOGC=10)", map[string]string{"GOGC": "10"})
	if err != nil {
		return err
	}
	defer proxy.stop()

	clients := make([]*client, memoryFillConns)
	for i := range clients {
		clients[i] = newClient(proxy.addr)
		defer clients[i].close()
	}
	// /api/auth/session authenticates exactly like a forwarded request
	// (both caches filled), without the upstream round trip.
	warm := rawRequest("GET", proxy.addr, "/api/auth/session", b.token, nil)
	for i := range 2000 {
		if status, body, err := clients[i%len(clients)].do(warm); err != nil || status != 200 {
			return fmt.Errorf("warm-up: status %d %s: %w", status, body, err)
		}
	}
	before, err := settledHeap(proxy, clients[0], warm)
	if err != nil {
		return err
	}
	b.logf("memory: one request for each of %d tokens", n)
	var wg sync.WaitGroup
	errs := make([]error, len(clients))
	for w, c := range clients {
		wg.Go(func() {
			for i := w; i < len(tokens) && ctx.Err() == nil; i += len(clients) {
				req := rawRequest("GET", proxy.addr, "/api/auth/session", tokens[i], nil)
				status, body, err := c.do(req)
				if err == nil && status != 200 {
					err = fmt.Errorf("status %d: %s", status, body)
				}
				if err != nil {
					errs[w] = fmt.Errorf("token %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return err
	}
	after, err := settledHeap(proxy, clients[0], warm)
	if err != nil {
		return err
	}
	misses, err := scrape(proxy.metricsAddr, `authsidecar_cache_requests_total{cache="session",result="miss"}`)
	if err != nil {
		return err
	}
	if int(misses) < n {
		return fmt.Errorf("only %v session cache misses for %d new sessions: not all were looked up", misses, n)
	}
	rep.memSessions, rep.heapBefore, rep.heapAfter = n, before, after
	return nil
}

// signAll signs a token for each session id, on every core.
func (b *bench) signAll(ids []string, expires time.Time) ([]string, error) {
	tokens := make([]string, len(ids))
	workers := runtime.NumCPU()
	errs := make([]error, workers)
	now := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(ids); i += workers {
				tok, err := b.signer.Sign(token.Claims{
					SessionID: ids[i], Subject: b.user.id, DeviceID: b.user.device, IssuedAt: now, ExpiresAt: expires,
				})
				if err != nil {
					errs[w] = err
					return
				}
				tokens[i] = tok
			}
		})
	}
	wg.Wait()
	return tokens, errors.Join(errs...)
}

// settledHeap estimates the proxy's live heap: go_memstats_heap_alloc_bytes
// is the live heap plus the garbage made since the last collection. Between
// scrapes it sends requests of an already cached token, whose garbage
// triggers collections (GOGC=10 collects after 10% growth); the smallest
// reading is the closest to the live heap.
func settledHeap(p *proxyProc, c *client, req []byte) (float64, error) {
	least := math.Inf(1)
	for range 6 {
		for range 1000 {
			if status, _, err := c.do(req); err != nil || status != 200 {
				return 0, fmt.Errorf("heap settling request: status %d: %w", status, err)
			}
		}
		v, err := scrape(p.metricsAddr, "go_memstats_heap_alloc_bytes")
		if err != nil {
			return 0, err
		}
		least = min(least, v)
	}
	return least, nil
}

// roundWarmup is each round's unrecorded warm-up: the connections are new
// each round.
func roundWarmup(o options) time.Duration { return o.warmup / 4 }
