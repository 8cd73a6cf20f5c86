package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// fanout is what the replicas scenario measured with one number of
// replicas.
type fanout struct {
	replicas int
	toLast   measurement // per revocation: until the last replica had acted on it
	each     measurement // every replica's time, all revocations
	logout   measurement // the logout's own answer on A
	timeouts int         // replicas that had not heard within revocationTimeout

	listeners   int // LISTEN connections on the schema
	pooledConns int // PgBouncer's server connections for all replicas' pools
	// CPU of the LISTEN backends on PostgreSQL: per revocation during the
	// fan-out, and per second while nothing happens (the listeners'
	// health probes). Zero when /proc could not be read.
	cpuPerRevocation, cpuIdlePerSecond time.Duration
}

// replicas: N caching replicas on one database, their pools through
// PgBouncer in transaction mode and each with a direct LISTEN connection
// (the deployment the operations guide describes for many replicas). For
// each of opts.fanouts tokens (sessions inserted and tokens signed by the
// bench, so that no login's password hash competes for the cores): every
// replica caches it, it is logged out on A, and the bench waits for every
// replica's "session change heard" line, which a replica logs once it has
// dropped the session from its cache; then each replica must refuse the
// token. Polling twenty replicas instead would keep both cores busy with
// the polling and time that. Then the load on PostgreSQL: LISTEN
// connections, PgBouncer's server connections, and the CPU of the LISTEN
// backends.
func (b *bench) replicas(ctx context.Context, rep *report) error {
	pb, err := startPgBouncer(b.tmp, b.db)
	if err != nil {
		return err
	}
	defer pb.proc.stop()
	h := &hearing{}
	var reps []*proxyProc
	defer func() {
		for _, r := range reps {
			r.stop()
		}
	}()
	for _, n := range b.opts.replicaCounts {
		for len(reps) < n {
			// Started two at a time: each start costs a core for a moment.
			var wg sync.WaitGroup
			batch := min(2, n-len(reps))
			started := make([]*proxyProc, batch)
			errs := make([]error, batch)
			for i := range batch {
				idx := len(reps) + i
				wg.Go(func() {
					started[i], errs[i] = b.startProxyWatching(ctx, fmt.Sprintf("replica %d", idx+1), map[string]string{
						"DATABASE_URL":        pb.url(),
						"DATABASE_LISTEN_URL": b.db.url,
						"AUTO_MIGRATE":        "false",
						"LOG_LEVEL":           "debug", // for "session change heard"
					}, func(line string) { h.line(idx, line) })
				})
			}
			wg.Wait()
			for i := range batch {
				if errs[i] != nil {
					return errs[i]
				}
				reps = append(reps, started[i])
			}
		}
		b.logf("replicas: %d replicas listening; %d revocations", n, b.opts.fanouts)
		f, err := b.fanout(ctx, reps, pb, h)
		if err != nil {
			return fmt.Errorf("%d replicas: %w", n, err)
		}
		rep.fanouts = append(rep.fanouts, f)
	}
	return nil
}

// hearing collects, for the session being revoked, when each replica said
// it had heard of the change.
type hearing struct {
	mu      sync.Mutex
	session string
	t0      time.Time
	n       int
	times   map[int]time.Duration
	all     chan struct{} // closed when n replicas have heard
}

func (h *hearing) expect(session string, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.session, h.n, h.times, h.all = session, n, map[int]time.Duration{}, make(chan struct{})
	h.t0 = time.Now()
}

// line is called with every line replica logs.
func (h *hearing) line(replica int, line string) {
	if !strings.Contains(line, `"session change heard"`) {
		return
	}
	at := time.Now()
	var e struct {
		SessionID string `json:"session_id"`
	}
	if json.Unmarshal([]byte(line), &e) != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if e.SessionID != h.session || h.times == nil {
		return
	}
	if _, seen := h.times[replica]; seen {
		return
	}
	h.times[replica] = at.Sub(h.t0)
	if len(h.times) == h.n {
		close(h.all)
	}
}

func (h *hearing) result() (map[int]time.Duration, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.times), h.all
}

func (b *bench) fanout(ctx context.Context, reps []*proxyProc, pb *pgbouncer, h *hearing) (fanout, error) {
	f := fanout{replicas: len(reps)}
	n := b.opts.fanouts
	expires := time.Now().Add(time.Hour).Truncate(time.Second)
	ids, err := b.db.insertSessions(ctx, b.user, n, expires, 0, true)
	if err != nil {
		return f, err
	}
	tokens, err := b.signAll(ids, expires)
	if err != nil {
		return f, err
	}
	clients := make([]*client, len(reps))
	for i, r := range reps {
		clients[i] = newClient(r.addr)
		defer clients[i].close()
	}
	logoutA := newClient(b.a.addr)
	defer logoutA.close()

	pids, err := b.db.listenerPIDs(ctx)
	if err != nil {
		return f, err
	}
	f.listeners = len(pids)
	if f.pooledConns, err = pb.serverConns(ctx); err != nil {
		return f, err
	}
	cpu0, cpuOK := backendsCPU(pids)

	var last, each, logouts []time.Duration
	for i, tok := range tokens {
		if err := ctx.Err(); err != nil {
			return f, err
		}
		get := func(j int) []byte { return rawRequest("GET", reps[j].addr, proxiedPath, tok, nil) }
		for j, c := range clients {
			if status, body, err := c.once(get(j)); err != nil || status/100 != 2 {
				return f, fmt.Errorf("token %d: warm replica %d: status %d %s: %w", i, j+1, status, body, err)
			}
		}
		h.expect(ids[i], len(reps))
		t0 := time.Now()
		status, body, err := logoutA.once(rawRequest("POST", b.a.addr, "/api/auth/logout", tok, []byte{}))
		if err == nil && status != 204 {
			err = fmt.Errorf("logout on A: status %d: %s", status, body)
		}
		if err != nil {
			return f, err
		}
		logouts = append(logouts, time.Since(t0))
		_, all := h.result()
		select {
		case <-all:
		case <-time.After(revocationTimeout):
		case <-ctx.Done():
			return f, ctx.Err()
		}
		times, _ := h.result()
		worst := time.Duration(0)
		for j := range reps {
			t, ok := times[j]
			if !ok {
				f.timeouts++
				t = revocationTimeout
			}
			each = append(each, t)
			worst = max(worst, t)
		}
		last = append(last, worst)
		// Heard is not enough: every replica must now refuse the token.
		for j, c := range clients {
			if status, body, err := c.once(get(j)); err != nil || status != 401 {
				return f, fmt.Errorf("token %d: replica %d after the logout: status %d %s: %w", i, j+1, status, body, err)
			}
		}
	}
	cpu1, ok1 := backendsCPU(pids)
	if cpuOK && ok1 {
		f.cpuPerRevocation = (cpu1 - cpu0) / time.Duration(n)
		// The same backends while nothing is revoked: what the listeners'
		// health probes cost.
		const quiet = 10 * time.Second
		b.logf("replicas: %s with nothing revoked", quiet)
		select {
		case <-ctx.Done():
			return f, ctx.Err()
		case <-time.After(quiet):
		}
		if cpu2, ok := backendsCPU(pids); ok {
			f.cpuIdlePerSecond = (cpu2 - cpu1) / time.Duration(quiet/time.Second)
		}
	}
	f.toLast = aggregate([]connResult{{latencies: last}}, 0)
	f.each = aggregate([]connResult{{latencies: each}}, 0)
	f.logout = aggregate([]connResult{{latencies: logouts}}, 0)
	return f, nil
}

// listenerPIDs are the PostgreSQL backends of the LISTEN connections on
// the bench's schema (the listener names its connection after its
// channel, which the schema determines).
func (d *database) listenerPIDs(ctx context.Context) ([]int, error) {
	rows, err := d.conn.Query(ctx, `
		SELECT pid FROM pg_stat_activity
		WHERE application_name = 'authsidecar-listener authsidecar_' || left(md5($1), 16)`, d.schema)
	if err != nil {
		return nil, fmt.Errorf("listener backends: %w", err)
	}
	defer rows.Close()
	var pids []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return nil, err
		}
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	return pids, rows.Err()
}

// backendsCPU is the CPU time the processes pids have used, from
// /proc/<pid>/schedstat (nanoseconds, where /proc/<pid>/stat counts in
// hundredths of a second); false where it cannot be read (another
// machine, another user's processes).
func backendsCPU(pids []int) (time.Duration, bool) {
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/schedstat")
		if err != nil {
			return 0, false
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			return 0, false
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, false
		}
		total += time.Duration(ns)
	}
	return total, true
}
