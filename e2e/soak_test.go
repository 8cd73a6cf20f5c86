//go:build soak

package e2e

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testkit"
)

// The soak: make soak (go test -tags soak -run TestSoak -v ./e2e/). A
// steady mixed load — logins, refreshes, proxied writes, logouts checked on
// every replica — for -soak.duration, while the proxy's heap, goroutines,
// open files and database connections are printed every -soak.every; at
// the end they must not have grown past what a steady state explains, and
// the workload's checks (every acknowledged write readable, no 401 for a
// live session, no late revocation) must hold.

var (
	soakDuration = flag.Duration("soak.duration", 10*time.Minute, "how long the soak drives load")
	soakEvery    = flag.Duration("soak.every", time.Minute, "how often the soak prints the proxy's resources")
	soakReport   = flag.String("soak.report", "", "write the soak's table to this file when it passes (make soak: docs/soak.md)")
)

// soakSample is what the soak reads of the proxy at one moment.
type soakSample struct {
	at                         time.Duration
	heapInuse                  float64 // go_memstats_heap_inuse_bytes
	goroutines, openFDs, conns float64 // conns: its connections in pg_stat_activity
	writes                     int     // acknowledged so far
}

func TestSoak(t *testing.T) {
	db := databaseURL(t)
	app := "authsidecar-soak-" + randomTag()
	// The proxy's connections carry a name of their own, so that
	// pg_stat_activity tells them from everyone else's on the server.
	s := newStackOn(t, db, map[string]string{
		"DATABASE_URL": db + "&application_name=" + app,
		"LOG_LEVEL":    "info",
	})
	b := s.StartProxy()
	accounts := []string{"s1", "s2", "s3", "s4"}
	for _, a := range accounts {
		s.AddUser(chaosDevice, a, a, false)
	}
	w := newWorkload(t, db, func() []*process { return []*process{s.Proxy, b} }, accounts)
	w.refreshEvery, w.loginEvery = 10, 30

	every := min(*soakEvery, max(*soakDuration/4, time.Second))
	sample := func(start time.Time) soakSample {
		var conns int
		query(t, testkit.BaseURL(), `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 OR application_name = 'authsidecar-listener authsidecar_' || left(md5($2), 16)`,
			[]any{app, schemaOf(t, db)}, &conns)
		w.mu.Lock()
		acked := len(w.acked)
		w.mu.Unlock()
		return soakSample{
			at:         time.Since(start).Round(time.Second),
			heapInuse:  scrape(t, s.Proxy, "go_memstats_heap_inuse_bytes"),
			goroutines: scrape(t, s.Proxy, "go_goroutines"),
			openFDs:    scrape(t, s.Proxy, "process_open_fds"),
			conns:      float64(conns),
			writes:     acked,
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), *soakDuration)
	defer cancel()
	done := make(chan struct{})
	start := time.Now()
	go func() { defer close(done); w.run(ctx, 4) }()
	t.Logf("soak: %s of load, the proxy's resources every %s", *soakDuration, every)
	// Heap, goroutines and files of one replica; the database connections
	// of both (their pools, migrators and listeners).
	t.Logf("%8s  %10s  %10s  %8s  %12s  %14s", "time", "heap inuse", "goroutines", "open fds", "db conns (2)", "writes acked")
	var samples []soakSample
	tick := time.NewTicker(every)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-tick.C:
		}
		sm := sample(start)
		samples = append(samples, sm)
		t.Logf("%8s  %8.1f MiB  %10.0f  %8.0f  %12.0f  %14d", sm.at, sm.heapInuse/(1<<20), sm.goroutines, sm.openFDs, sm.conns, sm.writes)
	}

	lost, unexplained := w.check(context.Background())
	for _, l := range lost {
		t.Errorf("acknowledged write not readable: %s", l)
	}
	for _, u := range unexplained {
		t.Errorf("%s", u)
	}
	if len(samples) < 2 {
		t.Fatalf("only %d samples: run longer than -soak.every", len(samples))
	}
	// Flat: the last reading against the first (taken once the load had
	// run for one interval). Goroutines, files and connections of a steady
	// load come back to the same few; the heap grows to the collector's
	// floor (GC_HEAP_FLOOR_MIB, 32 MiB) and with the sessions cached, and no
	// further.
	first, last := samples[0], samples[len(samples)-1]
	for _, c := range []struct {
		name        string
		first, last float64
		slack       float64
	}{
		{"goroutines", first.goroutines, last.goroutines, 50},
		{"open files", first.openFDs, last.openFDs, 20},
		{"database connections", first.conns, last.conns, 4},
		{"heap in use (MiB)", first.heapInuse / (1 << 20), last.heapInuse / (1 << 20), math.Max(64, first.heapInuse/(1<<20))},
	} {
		if c.last > c.first+c.slack {
			t.Errorf("%s grew from %.0f to %.0f over the soak (more than %.0f)", c.name, c.first, c.last, c.slack)
		}
	}
	if last.writes == first.writes {
		t.Errorf("no write was acknowledged after %s", first.at)
	}
	answers := fmt.Sprint(w.tally(start, time.Now()).statuses())
	t.Logf("soak: %d writes acknowledged, %d logouts checked on both replicas; %s", last.writes, w.revokes, answers)
	if *soakReport != "" && !t.Failed() {
		if err := os.WriteFile(*soakReport, []byte(soakMarkdown(*soakDuration, samples, last.writes, w.revokes, answers)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// soakMarkdown is docs/soak.md: how the soak runs, and its last passing run.
func soakMarkdown(d time.Duration, samples []soakSample, writes, logouts int, answers string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Soak

A steady mixed load for a while, and what it leaves behind. This file is
written by the soak (`+"`make soak`"+`, %s; `+"`SOAK=1m`"+` for a short run) when it
passes; run it again rather than editing it.

## How it runs

The storage backend and two proxy replicas on PostgreSQL, settings at their
defaults. Clients write records through both replicas, refresh their tokens
every 10th request and log in again every 30th; another logs sessions in,
makes both replicas cache them, logs them out and asks both replicas until
they refuse. Every minute the first replica's heap in use, goroutines, open
files and database connections (its pool and its listener, from
`+"`pg_stat_activity`"+`) are read. At the end:

- goroutines, open files and connections must be where they were after the
  first minute (within 50, 20 and 4), and the heap within its collector's
  floor (`+"`GC_HEAP_FLOOR_MIB`"+`) and the cached sessions;
- every acknowledged write must read back, no live session may have been
  answered 401, and no logout accepted late, as in the fault suite
  ([faults.md](faults.md)).

## Last run

%s of load, %s: %d writes acknowledged, %d logouts checked on both
replicas; every answer: %s.

| time | heap in use | goroutines | open files | database connections | writes acknowledged |
|---|---|---|---|---|---|
`, d, d, time.Now().UTC().Format("2006-01-02"), writes, logouts, answers)
	for _, s := range samples {
		fmt.Fprintf(&b, "| %s | %.1f MiB | %.0f | %.0f | %.0f | %d |\n", s.at, s.heapInuse/(1<<20), s.goroutines, s.openFDs, s.conns, s.writes)
	}
	return b.String()
}

// schemaOf is the schema a testkit URL selects.
func schemaOf(t *testing.T, dbURL string) string {
	t.Helper()
	var name string
	query(t, dbURL, `SELECT current_schema()`, nil, &name)
	return name
}
