package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// row is one load run in the table.
type row struct {
	name      string
	conns     int
	m         measurement
	cpuPerReq time.Duration // CPU of the answering process per request; 0 if unknown
}

// report is everything one run measured.
type report struct {
	date    time.Time
	machine machine
	opts    options
	elapsed time.Duration

	throughput []row
	logins     []row

	queries       float64 // database queries during the 32-connection caching run
	queryRequests int     // requests sent in that run

	revocation         measurement // latencies only
	logout             measurement // the logout's own answer time on A
	revokeCommit       measurement // a revoking UPDATE sent by the bench itself
	revocationTimeouts int

	rest, flooded, floodLogins measurement

	memSessions           int
	heapBefore, heapAfter float64

	rowsSmall, rowsLarge     int64
	lookupSmall, lookupLarge measurement
	loginSmall, loginLarge   measurement

	fanouts []fanout // the replicas scenario, one per number of replicas
}

type machine struct {
	goVersion, platform, cpu, postgres string
	cores                              int
	loadStart, loadEnd                 string // /proc/loadavg: others' work on the machine shows here
}

// loadAverage is the 1, 5 and 15 minute load averages, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], ", ")
	}
	return "unknown"
}

func describeMachine(ctx context.Context, db *database) machine {
	m := machine{platform: runtime.GOOS + "/" + runtime.GOARCH, cores: runtime.NumCPU(), cpu: "unknown", goVersion: runtime.Version()}
	if out, err := exec.CommandContext(ctx, "go", "version").Output(); err == nil {
		m.goVersion = strings.TrimSpace(string(out))
	}
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(info), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	m.postgres = "PostgreSQL " + db.version(ctx)
	m.loadStart = loadAverage()
	return m
}

// command is how this run was started, in Markdown, for the results file.
func (r *report) command() string {
	cmd := "`" + strings.TrimSpace("go run ./proxy/bench "+strings.Join(os.Args[1:], " ")) + "`"
	if os.Getenv("MAKELEVEL") != "" { // set by make for the commands it runs
		return "`make bench` (which runs " + cmd + ")"
	}
	return cmd
}

func (r *report) find(name string, conns int) measurement {
	for _, t := range r.throughput {
		if t.name == name && t.conns == conns {
			return t.m
		}
	}
	return measurement{}
}

func (r *report) bytesPerSession() float64 {
	return (r.heapAfter - r.heapBefore) / float64(r.memSessions)
}

func (r *report) queriesPerRequest() float64 {
	if r.queryRequests == 0 {
		return 0
	}
	return r.queries / float64(r.queryRequests)
}

// table is the results table.
func (r *report) table() string {
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	fmt.Fprintln(w, "scenario\tconns\treq/s\tp50\tp99\tCPU/req\tnotes")
	for _, conns := range connLevels {
		for _, t := range r.throughput {
			if t.conns == conns {
				cpu := "-"
				if t.cpuPerReq > 0 {
					cpu = dur(t.cpuPerReq)
				}
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", t.name, t.conns, num(t.m.rate()), dur(t.m.p(.50)), dur(t.m.p(.99)), cpu, unexpected(t.m))
			}
		}
	}
	// The rows below have no CPU column; their notes are in the last one.
	for _, l := range r.logins {
		fmt.Fprintf(w, "logins\t%d\t%s/s\t%s\t%s\t\t%s; %s\n", l.conns, num(l.m.rateOf(200)), dur(l.m.p(.50)), dur(l.m.p(.99)), l.m.statuses(), r.perCore(l.m.rateOf(200)))
	}
	if r.ran("throughput") {
		fmt.Fprintf(w, "db queries per request (proxied, verify)\t32\t%.4f\t\t\t\t%s queries / %s requests\n",
			r.queriesPerRequest(), num(r.queries), num(float64(r.queryRequests)))
	}
	if r.ran("revocation") {
		fmt.Fprintf(w, "revocation propagation\t1\t\t%s\t%s\t\t%d logouts on A polled on B, %d timeouts (>%s); "+
			"the logout's own answer p50 %s, p99 %s; a revoking UPDATE alone p50 %s, p99 %s\n",
			dur(r.revocation.p(.50)), dur(r.revocation.p(.99)), r.revocation.count(), r.revocationTimeouts, revocationTimeout,
			dur(r.logout.p(.50)), dur(r.logout.p(.99)), dur(r.revokeCommit.p(.50)), dur(r.revokeCommit.p(.99)))
	}
	if r.ran("flood") {
		fmt.Fprintf(w, "proxied at rest / in login flood\t%d/s\t%s / %s\t%s / %s\t%s / %s\t\tp99 ×%.2f; flood: %s logins/s, %s; %s\n",
			floodRate, num(r.rest.rate()), num(r.flooded.rate()), dur(r.rest.p(.50)), dur(r.flooded.p(.50)), dur(r.rest.p(.99)), dur(r.flooded.p(.99)),
			ratio(r.flooded.p(.99), r.rest.p(.99)), num(r.floodLogins.rateOf(200)), r.floodLogins.statuses(), r.perCore(r.floodLogins.rateOf(200)))
	}
	if r.ran("memory") {
		fmt.Fprintf(w, "memory per cached session\t-\t\t\t\t\t%.0f bytes (heap %s → %s for %s sessions)\n",
			r.bytesPerSession(), mib(r.heapBefore), mib(r.heapAfter), num(float64(r.memSessions)))
	}
	if r.ran("tables") {
		sizes := fmt.Sprintf("(%s / %s rows)", rowsLabel(r.rowsSmall), rowsLabel(r.rowsLarge))
		fmt.Fprintf(w, "session lookup %s\t1\t%s / %s\t%s / %s\t%s / %s\t\tp50 ×%.2f (caches off: a query per request)\n", sizes,
			num(r.lookupSmall.rate()), num(r.lookupLarge.rate()),
			dur(r.lookupSmall.p(.50)), dur(r.lookupLarge.p(.50)), dur(r.lookupSmall.p(.99)), dur(r.lookupLarge.p(.99)),
			ratio(r.lookupLarge.p(.50), r.lookupSmall.p(.50)))
		fmt.Fprintf(w, "login %s\t1\t%s / %s\t%s / %s\t%s / %s\t\tp50 ×%.2f\n", sizes,
			num(r.loginSmall.rateOf(200)), num(r.loginLarge.rateOf(200)),
			dur(r.loginSmall.p(.50)), dur(r.loginLarge.p(.50)), dur(r.loginSmall.p(.99)), dur(r.loginLarge.p(.99)),
			ratio(r.loginLarge.p(.50), r.loginSmall.p(.50)))
	}
	for _, f := range r.fanouts {
		cpu := "listener backends' CPU unknown"
		if f.cpuPerRevocation > 0 || f.cpuIdlePerSecond > 0 {
			cpu = fmt.Sprintf("their CPU %s per revocation (%s per listener), %s per second idle",
				dur(f.cpuPerRevocation), dur(f.cpuPerRevocation/time.Duration(max(f.listeners, 1))), dur(f.cpuIdlePerSecond))
		}
		fmt.Fprintf(w, "revocation to every replica (%d replicas)\t%d\t\t%s\t%s\t\t%d logouts on A; each replica p50 %s, p99 %s; %d timeouts (>%s); the logout's own answer p50 %s, p99 %s; "+
			"on PostgreSQL %d LISTEN connections (the replicas' and %d of the run's other proxies), %d PgBouncer server connections for all the replicas' pools; %s\n",
			f.replicas, f.replicas, dur(f.toLast.p(.50)), dur(f.toLast.p(.99)), f.toLast.count(), dur(f.each.p(.50)), dur(f.each.p(.99)),
			f.timeouts, revocationTimeout, dur(f.logout.p(.50)), dur(f.logout.p(.99)), f.listeners, f.listeners-f.replicas, f.pooledConns, cpu)
	}
	_ = w.Flush()
	// tabwriter pads empty last cells; trailing spaces are noise in a diff.
	lines := strings.Split(b.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}

// keycloakLoginsPerCPU is Keycloak's published sizing for password logins
// (its guide allocates one vCPU per 15 password-based logins per second):
// the figure an operator comparing identity servers will have at hand.
const keycloakLoginsPerCPU = 15

// perCore is a login rate per core of the machine, next to Keycloak's.
func (r *report) perCore(rate float64) string {
	return fmt.Sprintf("%.1f logins/s per core (Keycloak's sizing: %d per vCPU)", rate/float64(r.machine.cores), keycloakLoginsPerCPU)
}

// target is one of the product's performance targets and its result.
type target struct {
	scenario string // the scenario that measures it (see scenarioNames)
	name     string
	measured string
	pass     bool
}

// ran reports whether this run measured scenario: a partial run (-only)
// shows neither rows nor verdicts for what it did not measure, rather than
// zeros that would pass.
func (r *report) ran(scenario string) bool {
	if r.opts.only == nil {
		return !optIn[scenario]
	}
	return r.opts.only[scenario]
}

// lookupTolerance is how much slower a p50 may be with the large table
// than with the small one and still count as "no slower": runs on two
// shared cores vary by about this much from one run to the next.
const lookupTolerance = 1.2

func (r *report) targets() []target {
	bare32, cache32 := r.find("bare reverse proxy", 32), r.find("authsidecar (caches)", 32)
	thr := cache32.rate() / bare32.rate()
	added := r.find("authsidecar (caches)", 1).p(.50) - r.find("bare reverse proxy", 1).p(.50)
	qpr := r.queriesPerRequest()
	verify32 := r.find(verifyName, 32)
	vthr := verify32.rate() / cache32.rate()
	rev := r.revocation.p(.99)
	flood := ratio(r.flooded.p(.99), r.rest.p(.99))
	mem := r.bytesPerSession()
	lookup := ratio(r.lookupLarge.p(.50), r.lookupSmall.p(.50))
	login := ratio(r.loginLarge.p(.50), r.loginSmall.p(.50))
	var fan []target
	for _, f := range r.fanouts {
		p99 := f.toLast.p(.99)
		fan = append(fan, target{"replicas", fmt.Sprintf("revocation seen on every one of %d replicas: p99 ≤ 10 ms", f.replicas),
			fmt.Sprintf("%s, ratio %.2f of the limit", dur(p99), float64(p99)/float64(10*time.Millisecond)), p99 <= 10*time.Millisecond && f.timeouts == 0})
	}
	return append([]target{
		{"throughput", "proxy throughput ≥ 0.90 × bare reverse proxy (32 conns)", fmt.Sprintf("×%.2f (%s vs %s req/s)", thr, num(cache32.rate()), num(bare32.rate())), thr >= 0.90},
		{"throughput", "added p50 latency over the bare proxy ≤ 50 µs (1 conn)", fmt.Sprintf("%s, ratio %.2f of the limit", dur(added), float64(added)/float64(50*time.Microsecond)), added <= 50*time.Microsecond},
		{"throughput", "forward-auth throughput ≥ the forwarding proxy's (32 conns)", fmt.Sprintf("×%.2f (%s vs %s req/s)", vthr, num(verify32.rate()), num(cache32.rate())), vthr >= 1},
		{"throughput", "≤ 0.01 database queries per proxied request or verify call (steady state)", fmt.Sprintf("%.4f, ratio %.2f of the limit", qpr, qpr/0.01), qpr <= 0.01},
		{"revocation", "revocation seen on another replica: p99 ≤ 10 ms", fmt.Sprintf("%s, ratio %.2f of the limit", dur(rev), float64(rev)/float64(10*time.Millisecond)), rev <= 10*time.Millisecond},
		{"flood", "proxied p99 during a login flood ≤ 1.5 × at rest", fmt.Sprintf("×%.2f (%s vs %s)", flood, dur(r.flooded.p(.99)), dur(r.rest.p(.99))), flood <= 1.5},
		{"memory", "≤ 1 KiB of memory per cached session", fmt.Sprintf("%.0f bytes, ratio %.2f of the limit", mem, mem/1024), mem <= 1024},
		{"tables", fmt.Sprintf("session lookup p50 with %s rows ≤ %.1f × with %s", rowsLabel(r.rowsLarge), lookupTolerance, rowsLabel(r.rowsSmall)), fmt.Sprintf("×%.2f", lookup), lookup <= lookupTolerance},
		{"tables", fmt.Sprintf("login p50 with %s rows ≤ %.1f × with %s", rowsLabel(r.rowsLarge), lookupTolerance, rowsLabel(r.rowsSmall)), fmt.Sprintf("×%.2f", login), login <= lookupTolerance},
	}, fan...)
}

func (t target) verdict() string {
	if t.pass {
		return "PASS"
	}
	return "FAIL"
}

// text is what the bench prints.
func (r *report) text() string {
	var b bytes.Buffer
	b.WriteString("\n")
	b.WriteString(r.table())
	b.WriteString("\ntargets\n")
	w := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	for _, t := range r.targets() {
		if r.ran(t.scenario) {
			fmt.Fprintf(w, "%s\t%s\t%s\n", t.verdict(), t.name, t.measured)
		}
	}
	_ = w.Flush()
	fmt.Fprintf(&b, "\n%s, %s, %s, %d cores, %s; load average %s at the start, %s at the end; run took %s\n",
		r.machine.goVersion, r.machine.platform, r.machine.cpu, r.machine.cores, r.machine.postgres,
		r.machine.loadStart, r.machine.loadEnd, r.elapsed.Round(time.Second))
	return b.String()
}

// markdown is docs/benchmarks.md.
func (r *report) markdown() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, `# Benchmarks

What authsidecar costs over a bare reverse proxy, and whether it meets its
performance targets. This file is written by the benchmark tool
(`+"`proxy/bench`"+`); run it again rather than editing it.

## How it is measured

One run, all on loopback, starts as separate processes a trivial upstream
(every request: 201 and a small JSON body), a bare tuned
`+"`httputil.ReverseProxy`"+` in front of it (Rewrite with SetURL and
SetXForwarded, a pooled transport, the same server timeouts as the proxy,
and Go's default garbage collector settings), and the real proxy binary:
with its caches and default settings, with `+"`SESSION_CACHE=false`"+`
(every request checked in the database), and, at 32 connections, one
*arm* per remaining optimisation: the same caching proxy with that one
optimisation replaced (the heap floor off, so Go's own collector settings;
and Go's own alternative, a static `+"`GOGC`"+` with `+"`GOMEMLIMIT`"+`). An
optimisation stays only while its arm is measurably slower. One more arm
shows a cost instead: OpenTelemetry tracing on, sampling 1 %% of the
requests (`+"`OTEL_TRACES_SAMPLER=parentbased_traceidratio`"+`,
`+"`OTEL_TRACES_SAMPLER_ARG=0.01`"+`) and exporting them over OTLP/HTTP to a
trivial receiver the bench runs; the caching proxy's own row is tracing
off. They use a
schema of their own on PostgreSQL, dropped at the end.

The load generator is the bench process: N persistent keep-alive
connections, each sending its next request as soon as the previous answer
arrived (closed loop); every latency is kept, and p50/p99 are exact
(nearest rank). Proxied requests are `+"`GET /api/anything`"+` with a valid
Bearer token. Each throughput figure is %d rounds of %s warm-up (not
recorded) and %s recorded, the targets interleaved round by round so
that a change in the machine's background load weighs on all of them
alike: caches off, then the bare proxy and authsidecar with caches back to
back (each first in every other round), then the arms, then direct. *CPU/req* is the CPU time (user + system, from `+"`/proc`"+`) of the
process that answers the load generator — the upstream for *direct*, the
proxy otherwise — per request: unlike req/s, it does not depend on what
else the cores were doing.

**Everything shares the machine's %d cores**: load generator, upstream,
bare proxy, proxies and PostgreSQL (and whatever else ran on the machine:
see the load average below). Absolute figures are therefore lower than
each part would reach alone; the comparisons (authsidecar against the bare
proxy under the same conditions) are the point.

- *db queries per request*: `+"`authsidecar_db_query_duration_seconds_count`"+`
  (all series) scraped before and after the 32-connection rounds,
  divided by every request those rounds sent to the caching proxy
  (proxied GETs and forward-auth calls alike).
- *verify (forward-auth)*: the caching proxy asked at
  `+"`/api/auth/verify`"+` about the proxied GET, as an ingress asks
  (`+"`X-Forwarded-Method`"+`, `+"`X-Forwarded-Uri`"+`, the Bearer token);
  it answers 200 with the identity headers and forwards nothing.
- *revocation propagation*: a second caching replica (B) on the same
  database. %d times: log in on A, make B cache the token (a 2xx), then
  `+"`POST /api/auth/logout`"+` on A while polling B with the token in a tight
  loop; the time from sending the logout to B's first 401. For reference,
  each round also times a revoking `+"`UPDATE`"+` sent by the bench itself:
  the commit the logout waits for.
- *login flood*: proxied traffic at a steady %d requests/s (an open loop
  over 32 connections: requests leave on a schedule and a latency counts
  from the scheduled time, so no stall hides), at rest, then again while 32
  clients flood `+"`/api/auth/login`"+` (one attempt in four with a wrong
  password, two clients per account so that no account locks), in %d
  alternating slices of %s at rest and %s during the flood, merged per
  side. Login rates are also given per core of the machine, next to
  Keycloak's published sizing (one vCPU per 15 password logins a second);
  the proxy hashes on half the cores, at a low priority, and rests between
  hashes (see architecture.md). A saturating closed loop
  would measure the load generator's queue instead: any CPU the logins take
  must then show in full.
- *revocation to every replica* (only with `+"`-only replicas`"+`, which
  takes about a minute more): 10 and then 20 caching replicas on the same
  schema, their pools through a PgBouncer in transaction mode that the
  bench starts, each with a direct LISTEN connection
  (`+"`DATABASE_LISTEN_URL`"+`). For each of `+"`-fanouts`"+` sessions (inserted by
  the bench, tokens signed by it): every replica caches the token, it is
  logged out on A, and the time from sending the logout until the last
  replica logs that it has dropped the session (`+"`session change heard`"+`,
  read from its stderr as it is written; polling twenty replicas would
  keep both cores busy with the polling); every replica must then answer
  401. Then the LISTEN
  backends' CPU on PostgreSQL (`+"`/proc/<pid>/schedstat`"+`) per revocation
  and per second while nothing happens (the listeners' health probes).
- *memory per cached session*: %s sessions inserted into `+"`sessions`"+`
  with tokens signed by the bench (it holds the signing key); a fresh caching
  proxy with `+"`GOGC=10`"+`; `+"`go_memstats_heap_alloc_bytes`"+` (least of six
  readings, with requests in between so that garbage gets collected) before
  and after one request per token.
- *large table*: session lookups on the caches-off proxy (rotating over a
  thousand random live sessions) and logins, one client each, with about a
  thousand rows in `+"`sessions`"+` and then with %s (half expired, half
  live; `+"`VACUUM ANALYZE`"+` after the insert). Tolerance: p50 within
  ×%.1f counts as no slower (run-to-run noise on two shared cores).

## Machine

| | |
|---|---|
| date | %s |
| go | %s |
| platform | %s |
| CPU | %s |
| cores | %d |
| database | %s |
| load average (1, 5, 15 min) | %s at the start, %s at the end |
| command | %s |
| run time | %s |

## Results

`+"```"+`
%s`+"```"+`

## Targets

| result | target | measured |
|---|---|---|
`,
		rounds, roundWarmup(r.opts), (r.opts.duration / rounds).Round(time.Millisecond), r.machine.cores, r.opts.revocations,
		floodRate, floodRounds, floodSlice(r.opts).Round(time.Millisecond), floodSlice(r.opts).Round(time.Millisecond), num(float64(r.opts.memSessions)), num(float64(r.opts.bigRows)), lookupTolerance,
		r.date.Format("2006-01-02 15:04 MST"), r.machine.goVersion, r.machine.platform, r.machine.cpu, r.machine.cores,
		r.machine.postgres, r.machine.loadStart, r.machine.loadEnd, r.command(), r.elapsed.Round(time.Second), r.table())
	for _, t := range r.targets() {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.verdict(), t.name, t.measured)
	}
	return b.String()
}

// unexpected notes answers that are not 2xx in a throughput run.
func unexpected(m measurement) string {
	if m.success() == m.count() && m.errors == 0 {
		return ""
	}
	return "not all 2xx: " + m.statuses()
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// dur formats a latency with three significant digits.
func dur(d time.Duration) string {
	us := float64(d) / float64(time.Microsecond)
	switch {
	case us < 0:
		return "-" + dur(-d)
	case us < 1000:
		return fmt.Sprintf("%.0f µs", us)
	case us < 10_000:
		return fmt.Sprintf("%.2f ms", us/1000)
	case us < 1_000_000:
		return fmt.Sprintf("%.1f ms", us/1000)
	}
	return fmt.Sprintf("%.2f s", us/1e6)
}

// num formats a count with thousands separators.
func num(f float64) string {
	s := fmt.Sprintf("%.0f", f)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func mib(bytes float64) string { return fmt.Sprintf("%.1f MiB", bytes/(1<<20)) }

// rowsLabel is a row count in short: 1k, 1M, 1,083.
func rowsLabel(n int64) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return num(float64(n))
}
