//go:build chaos

package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// The fault suite: make chaos (go test -tags chaos -run TestChaos ./e2e/).
// Not part of make test: it takes minutes, and it restarts, kills and
// freezes a PostgreSQL server (one of its own, started for each fault).

var chaosReport = flag.String("chaos.report", "", "write the table of what clients saw to this file (make chaos: docs/faults.md)")

// chaosClients is how many clients write, refresh and log in at once.
const chaosClients = 6

// fault is one thing that goes wrong.
type fault struct {
	name, how string
	// tune changes the load for this fault.
	tune func(w *workload)
	// inject does the fault and returns once it is over (the server back,
	// the process replaced).
	inject func(t *testing.T, env *chaosEnv)
	// restarts: the fault itself replaces a proxy, so that "without a
	// restart" is not asked of that one.
	restarts bool
}

// chaosEnv is one fault's world: a PostgreSQL of its own, the storage
// backend and two proxy replicas on it.
type chaosEnv struct {
	pg      *privatePG
	stack   *stack
	mu      sync.Mutex
	proxies []*process
}

func (e *chaosEnv) current() []*process {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*process(nil), e.proxies...)
}

var faults = []fault{
	{
		name: "PostgreSQL restarted",
		how:  "`pg_ctl restart -m fast` under load: every connection closed, the server back after a clean shutdown",
		inject: func(t *testing.T, e *chaosEnv) {
			e.pg.restart()
		},
	},
	{
		name: "PostgreSQL killed",
		how:  "`pg_ctl stop -m immediate` (every server process killed at once), then started again: crash recovery from the WAL, as after a crash or a failover",
		inject: func(t *testing.T, e *chaosEnv) {
			e.pg.crash()
		},
	},
	{
		name: "listener connections cut",
		how:  "`pg_terminate_backend` on both replicas' LISTEN connections, three times 2 s apart, while sessions are logged out",
		inject: func(t *testing.T, e *chaosEnv) {
			for i := range 3 {
				var n int
				query(t, e.pg.url("chaos"), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
					WHERE application_name LIKE 'authsidecar-listener %'`, nil, &n)
				if n == 0 && i == 0 {
					t.Fatal("no listener connection to cut")
				}
				time.Sleep(2 * time.Second)
			}
		},
	},
	{
		name: "PostgreSQL frozen for 10 s",
		how:  "SIGSTOP on the postmaster and every server process, SIGCONT 10 s later: connections open, nothing answers",
		inject: func(t *testing.T, e *chaosEnv) {
			e.pg.pause()
			time.Sleep(10 * time.Second)
			e.pg.resume()
		},
	},
	{
		name: "proxy killed",
		how:  "SIGKILL to one of the two replicas while clients refresh every 3rd request and log in again every 8th; a new one started 2 s later",
		tune: func(w *workload) { w.refreshEvery, w.loginEvery = 3, 8 },
		inject: func(t *testing.T, e *chaosEnv) {
			victim := e.current()[0]
			_ = victim.cmd.Process.Kill()
			<-victim.done
			time.Sleep(2 * time.Second)
			fresh := e.stack.StartProxy()
			e.mu.Lock()
			e.proxies[0] = fresh
			e.mu.Unlock()
		},
		restarts: true,
	},
}

// chaosResult is what one fault did to the clients.
type chaosResult struct {
	fault         fault
	during        tally // answers from the fault's start until every client wrote again
	recovered     time.Duration
	acked, writes int
	revokes       int
	lost          []string
	unexplained   []string
}

func TestChaos(t *testing.T) {
	var results []chaosResult
	for _, f := range faults {
		t.Run(strings.ReplaceAll(f.name, " ", "_"), func(t *testing.T) {
			results = append(results, runFault(t, f))
		})
	}
	table := chaosTable(results)
	t.Logf("what clients saw:\n%s", table)
	if *chaosReport != "" && !t.Failed() {
		if err := os.WriteFile(*chaosReport, []byte(chaosMarkdown(table)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func runFault(t *testing.T, f fault) chaosResult {
	pg := startPrivatePG(t)
	db := pg.url("chaos")
	s := newStackOn(t, db, map[string]string{"LISTENER_HEALTH_INTERVAL": "1s", "LOG_LEVEL": "info"})
	env := &chaosEnv{pg: pg, stack: s, proxies: []*process{s.Proxy, s.StartProxy()}}
	accounts := []string{"u1", "u2", "u3", "u4"}
	for _, a := range accounts {
		s.AddUser(chaosDevice, a, a, false)
	}
	w := newWorkload(t, db, env.current, accounts)
	// The listeners' health bound (twice LISTENER_HEALTH_INTERVAL) and a
	// second of slack for the checker's own polling on a busy machine.
	w.revokeWindow = 3 * time.Second
	if f.tune != nil {
		f.tune(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.run(ctx, chaosClients) }()
	stop := func() { cancel(); <-done }
	defer stop()

	time.Sleep(3 * time.Second) // load settles
	start := time.Now()
	f.inject(t, env)
	end := time.Now()
	waitFor(t, 90*time.Second, "every client writing again after the fault", func() bool { return w.allWroteSince(end, chaosClients) })
	recovered := time.Since(end)
	time.Sleep(3 * time.Second) // and a while of steady load after
	stop()

	// Recovery without a restart: the replicas the fault did not replace
	// are the processes that were there before it.
	if !f.restarts {
		for _, p := range env.current() {
			select {
			case <-p.done:
				t.Errorf("%s exited during the fault: %v", p.name, p.err)
			default:
			}
		}
	}
	lost, unexplained := w.check(context.Background())
	for _, l := range lost {
		t.Errorf("acknowledged write not readable: %s", l)
	}
	for _, u := range unexplained {
		t.Errorf("%s", u)
	}
	res := chaosResult{fault: f, during: w.tally(start, end.Add(recovered)), recovered: recovered,
		acked: len(w.acked), revokes: w.revokes, lost: lost, unexplained: unexplained}
	for _, e := range w.events {
		if e.what == "write" {
			res.writes++
		}
	}
	if res.revokes == 0 {
		t.Errorf("no logout was checked on every replica")
	}
	// What the database holds is what was acknowledged, at least.
	var rows int
	query(t, db, `SELECT count(*) FROM storage_records`, nil, &rows)
	if rows < res.acked {
		t.Errorf("storage_records holds %d rows, fewer than the %d writes acknowledged", rows, res.acked)
	}
	return res
}

// chaosTable is the results as a Markdown table.
func chaosTable(results []chaosResult) string {
	var b bytes.Buffer
	b.WriteString("| fault | answers from the fault until every client wrote again | back to normal | writes acknowledged (of all sent) | acknowledged writes lost | 401 for a live session | logouts checked on every replica / accepted late |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		late := 0
		for _, u := range r.unexplained {
			if strings.Contains(u, "after its logout") {
				late++
			}
		}
		live401 := 0
		for _, u := range r.unexplained {
			if strings.Contains(u, "for a live session") {
				live401++
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s after it ended | %d (of %d) | %d | %d | %d / %d |\n",
			r.fault.name, r.during.statuses(), r.recovered.Round(100*time.Millisecond), r.acked, r.writes, len(r.lost), live401, r.revokes, late)
	}
	return b.String()
}

func chaosMarkdown(table string) string {
	var b bytes.Buffer
	b.WriteString(`# Faults

What clients see when things break, and what the proxy promises
regardless. This file is written by the fault suite (` + "`make chaos`" + `,
about two minutes); run it again rather than editing it.

## How it is tested

For each fault, a PostgreSQL server of the suite's own (` + "`initdb`" + ` and
` + "`pg_ctl`" + ` in a temporary directory, so that nothing else on the machine is
touched), the storage backend and two proxy replicas on it, with
` + "`LISTENER_HEALTH_INTERVAL=1s`" + ` and the other settings at their defaults.
Six clients write records through the proxies, refresh their tokens every
20th request and log in again every 60th; a seventh logs a session in,
makes both replicas cache it, logs it out and asks both replicas until it
is refused. After 3 s of load the fault happens; the load goes on until
every client has written again, and 3 s more. Then the suite checks:

- **every acknowledged write is readable**: each record answered ` + "`201`" + `
  or ` + "`200`" + ` is read back through a proxy with the data written;
- **no revoked session is accepted** by any replica later than 3 s after
  its logout was answered ` + "`204`" + ` (the listeners' bound, twice
  ` + "`LISTENER_HEALTH_INTERVAL`" + `, and a second of slack for the checker's own
  polling);
- **no ` + "`401`" + ` for a live session**: every ` + "`401`" + ` a client got is checked
  against the database, which must show the token's session revoked,
  expired, or superseded by a refresh (a refresh that committed while its
  answer was lost: the old token then ends with its grace, and the client
  logs in again, as headsets do on a ` + "`401`" + `; a token a refresh replaced
  works for its grace but is never refreshed again), and nothing else
  ` + "`4xx`" + `: a login retried during the outage must not lock its account
  (` + "`429`" + `);
- **recovery without a restart**: the replicas the fault did not replace
  are the processes that ran before it.

Answers while the database is away are ` + "`503`" + ` (the proxy: a session it
cannot check, a login or refresh it cannot store; the storage backend: a
write it cannot commit) or, from a killed proxy, none at all; clients retry
them. A session already cached goes on being served while the database is
frozen, so writes to the backend wait for the database rather than fail.

## Results

`)
	b.WriteString(table)
	b.WriteString("\n*Answers* counts every answer the clients and the checker got from the fault's start until every client had a write acknowledged again (*no answer*: a connection refused or reset, by a killed proxy). *Back to normal* is measured from the end of the fault (the server accepting connections again, the new replica listening) and depends on the machine's load; nothing asserts it.\n")
	return b.String()
}

// allWroteSince reports whether every client has had a write acknowledged
// after since.
func (w *workload) allWroteSince(since time.Time, clients int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id := range clients {
		if !w.lastOK[id].After(since) {
			return false
		}
	}
	return true
}
