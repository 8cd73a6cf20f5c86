// Command bench measures what authsidecar costs over a bare reverse proxy,
// and checks the product's performance targets: throughput, added latency,
// database queries per request, revocation across replicas, proxied latency
// during a login flood, memory per cached session, and lookups and logins
// with a million sessions in the table.
//
// Everything runs on loopback on this machine: a trivial upstream, a bare
// httputil.ReverseProxy and the real proxy binaries are separate processes,
// and the load generator is this one. It prints a table, writes the same to
// docs/benchmarks.md, and reports each target as PASS or FAIL without
// failing on a miss: it exits non-zero only when it could not measure.
//
//	make bench            (or: go run ./proxy/bench from the repository root)
//	go run ./proxy/bench -only replicas     revocation across 10 and 20
//	                      replicas through PgBouncer (not in the default run:
//	                      it needs PgBouncer and starts twenty more proxies)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/token"
)

func main() {
	// Subcommands: the processes the bench starts from its own binary.
	if len(os.Args) > 1 {
		var serve func([]string) error
		switch os.Args[1] {
		case "upstream":
			serve = serveUpstream
		case "bareproxy":
			serve = serveBareProxy
		case "otlpsink":
			serve = serveOTLPSink
		}
		if serve != nil {
			if err := serve(os.Args[2:]); err != nil {
				fmt.Fprintf(os.Stderr, "bench %s: %v\n", os.Args[1], err)
				os.Exit(1)
			}
			return
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// options are the bench's flags; the defaults are the documented run.
type options struct {
	duration    time.Duration
	warmup      time.Duration
	memSessions int
	bigRows     int
	revocations int
	proxyBin    string
	out         string
	short       bool
	only        map[string]bool // scenarios to run; nil: all but the opt-in ones

	replicaCounts []int // the replicas scenario's numbers of replicas
	fanouts       int   // revocations timed with each number of replicas
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "recorded length of each load run")
	fs.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unrecorded warm-up before each load run")
	fs.IntVar(&o.memSessions, "mem-sessions", 100_000, "sessions cached to measure memory per session")
	fs.IntVar(&o.bigRows, "big-rows", 1_000_000, "rows in sessions for the large-table lookups")
	fs.IntVar(&o.revocations, "revocations", 200, "logouts timed across replicas")
	fs.StringVar(&o.proxyBin, "proxy", "bin/proxy", "proxy binary (built into a temporary directory if missing)")
	fs.StringVar(&o.out, "out", "docs/benchmarks.md", `results file ("" for none)`)
	fs.BoolVar(&o.short, "short", false, "a quick smoke run with small sizes (its results are not meaningful)")
	only := fs.String("only", "", "comma-separated scenarios to run ("+strings.Join(scenarioNames, ", ")+`); a partial run writes no results file`)
	replicaCounts := fs.String("replicas", "10,20", "numbers of replicas for the replicas scenario (-only replicas), comma-separated")
	fs.IntVar(&o.fanouts, "fanouts", 100, "revocations timed across the replicas with each number of replicas")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if *only != "" {
		o.only, o.out = map[string]bool{}, ""
		for _, name := range strings.Split(*only, ",") {
			if !slices.Contains(scenarioNames, name) {
				return o, fmt.Errorf("-only: unknown scenario %q (known: %s)", name, strings.Join(scenarioNames, ", "))
			}
			o.only[name] = true
		}
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.short {
		// Small sizes for whatever was not set explicitly.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]string{"duration": "1s", "warmup": "200ms", "mem-sessions": "10000", "big-rows": "50000", "revocations": "30", "replicas": "3", "fanouts": "20"} {
			if !set[name] {
				_ = fs.Set(name, v)
			}
		}
	}
	if o.duration <= 0 || o.warmup < 0 || o.memSessions < 1 || o.bigRows < 1 || o.revocations < 1 || o.fanouts < 1 {
		return o, errors.New("durations and sizes must be positive")
	}
	for _, v := range strings.Split(*replicaCounts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > 100 {
			return o, fmt.Errorf("-replicas: %q is not a number of replicas from 1 to 100", v)
		}
		o.replicaCounts = append(o.replicaCounts, n)
	}
	slices.Sort(o.replicaCounts)
	return o, nil
}

// account is a user that logs in.
type account struct{ device, username, password string }

// user is the bench's main account with its id.
type user struct {
	account
	id string
}

// bench is one run: its processes, schema and keys.
type bench struct {
	opts  options
	root  string // repository root
	tmp   string
	start time.Time

	db       *database
	proxyBin string
	signer   *token.Signer
	proxyEnv map[string]string // settings every proxy of the run shares

	procs    []*proc
	upstream string // addresses
	bare     string
	upProc   *proc
	bareProc *proc
	a        *proxyProc // caching proxy: throughput, logins, revocation (replica A), flood
	off      *proxyProc // SESSION_CACHE=false
	arms     []arm      // caching proxies that differ in one setting

	user     user
	accounts []account // for logins and the flood
	token    string    // the main user's token, logged in on a
}

// arm is a caching proxy run beside the default one with one setting
// changed, to show what a choice of the default is worth.
type arm struct {
	name  string
	env   map[string]string
	otlp  bool // sends its traces to the bench's OTLP sink
	proxy *proxyProc
}

// arms are the alternatives to the proxy's defaults measured in the
// throughput rounds, each showing what one remaining optimisation is worth:
// the heap floor (GC_HEAP_FLOOR_MIB, default 32) against Go's own collector
// settings, and against Go's own answer to the same need, a static GOGC
// with a GOMEMLIMIT (which turns the floor off).
//
// One arm is not an optimisation but a cost: tracing on, sampling 1 % of
// the requests (as a busy production would) and exporting them to a
// trivial OTLP receiver the bench runs, against the default, tracing off.
var arms = []arm{
	{name: "arm: heap floor off (Go's GC)", env: map[string]string{"GC_HEAP_FLOOR_MIB": "0"}},
	{name: "arm: GOGC=400 GOMEMLIMIT=256MiB", env: map[string]string{"GOGC": "400", "GOMEMLIMIT": "256MiB"}},
	{name: "arm: tracing on, 1 % sampled", otlp: true,
		env: map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}},
}

// Accounts: one main user, and sixteen for logins so that two flooding
// clients share each; see flood in scenarios.go for why that cannot lock
// an account out.
const (
	device        = "BENCH-DEVICE-001"
	loginAccounts = 16
)

func run(ctx context.Context, args []string) (err error) {
	opts, err := parseFlags(args)
	if err != nil {
		return err
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	b := &bench{opts: opts, root: root, start: time.Now()}
	defer func() {
		if cerr := b.cleanup(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	if err := b.setup(ctx); err != nil {
		return err
	}
	rep, err := b.measure(ctx)
	if err != nil {
		return err
	}
	rep.elapsed, rep.machine.loadEnd = time.Since(b.start), loadAverage()
	fmt.Print(rep.text())
	if opts.out != "" {
		path := opts.out
		if !filepath.IsAbs(path) {
			path = filepath.Join(root, path)
		}
		if err := os.WriteFile(path, []byte(rep.markdown()), 0o644); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
		fmt.Printf("\nwritten to %s\n", opts.out)
	}
	return nil
}

// repoRoot is the nearest directory up from the working directory that
// holds go.mod: bin/proxy, ./proxy and docs/ are found from there.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the bench inside the repository (no go.mod found above the working directory)")
		}
		dir = parent
	}
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) setup(ctx context.Context) error {
	var err error
	if b.tmp, err = os.MkdirTemp("", "authsidecar-bench-"); err != nil {
		return err
	}
	if err := b.findProxy(ctx); err != nil {
		return err
	}
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		base = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	if b.db, err = createSchema(ctx, base); err != nil {
		return err
	}
	b.logf("schema %s", b.db.schema)

	// The bench holds the signing key, so that it can sign tokens for
	// sessions it inserts itself (memory and large-table scenarios).
	key, err := token.GenerateKey()
	if err != nil {
		return err
	}
	pem, err := key.MarshalPEM()
	if err != nil {
		return err
	}
	keyFile := filepath.Join(b.tmp, "signing-key.pem")
	if err := os.WriteFile(keyFile, pem, 0o600); err != nil {
		return fmt.Errorf("write signing key: %w", err)
	}
	// The issuer is the proxy's fixed "iss" (proxy/app.go).
	if b.signer, err = token.New([]token.Key{key}, token.Options{Issuer: "authsidecar"}); err != nil {
		return err
	}

	up, upAddr, err := startSelf("upstream", "upstream")
	if err != nil {
		return err
	}
	b.procs, b.upstream, b.upProc = append(b.procs, up), upAddr, up
	bare, bareAddr, err := startSelf("bare proxy", "bareproxy", "-upstream", "http://"+upAddr)
	if err != nil {
		return err
	}
	b.procs, b.bare, b.bareProc = append(b.procs, bare), bareAddr, bare

	b.proxyEnv = map[string]string{
		"DATABASE_URL":     b.db.url,
		"UPSTREAM_URL":     "http://" + upAddr,
		"LOG_LEVEL":        "warn",
		"SIGNING_KEY_FILE": keyFile,
		// The janitor runs once at start and then hourly: sessions the
		// bench inserts (expired ones included) stay while it measures.
		"CLEANUP_INTERVAL": "1h",
	}
	b.user = user{account: account{device, "bench", "2468"}}
	for i := range loginAccounts {
		b.accounts = append(b.accounts, account{device, fmt.Sprintf("login-%02d", i), "1357"})
	}
	if err := b.addUsers(ctx, append([]account{b.user.account}, b.accounts...)); err != nil {
		return err
	}
	if b.user.id, err = b.db.userID(ctx, b.user.account); err != nil {
		return err
	}

	if b.a, err = b.startProxy(ctx, "authsidecar", nil); err != nil {
		return err
	}
	if b.off, err = b.startProxy(ctx, "authsidecar (caches off)", map[string]string{"SESSION_CACHE": "false"}); err != nil {
		return err
	}
	sink := ""
	for _, a := range arms {
		env := a.env
		if a.otlp {
			if sink == "" {
				p, addr, err := startSelf("OTLP sink", "otlpsink")
				if err != nil {
					return err
				}
				b.procs, sink = append(b.procs, p), addr
			}
			env = maps.Clone(a.env)
			env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://" + sink
		}
		p, err := b.startProxy(ctx, a.name, env)
		if err != nil {
			return err
		}
		b.arms = append(b.arms, arm{name: a.name, env: env, proxy: p})
	}
	if b.token, err = login(newClient(b.a.addr), b.a.addr, b.user.account); err != nil {
		return err
	}
	b.logf("upstream %s, bare proxy %s, authsidecar %s, caches off %s", b.upstream, b.bare, b.a.addr, b.off.addr)
	return nil
}

// findProxy uses -proxy (bin/proxy, built by make) or builds the proxy into
// the run's temporary directory.
func (b *bench) findProxy(ctx context.Context) error {
	b.proxyBin = b.opts.proxyBin
	if !filepath.IsAbs(b.proxyBin) {
		b.proxyBin = filepath.Join(b.root, b.proxyBin)
	}
	if _, err := os.Stat(b.proxyBin); err == nil {
		return nil
	}
	b.proxyBin = filepath.Join(b.tmp, "proxy")
	b.logf("building %s", b.proxyBin)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", b.proxyBin, "./proxy")
	cmd.Dir = b.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./proxy: %w: %s", err, out)
	}
	return nil
}

// startProxy starts a proxy on the run's schema with extra settings.
func (b *bench) startProxy(ctx context.Context, name string, extra map[string]string) (*proxyProc, error) {
	return b.startProxyWatching(ctx, name, extra, nil)
}

// startProxyWatching is startProxy with onLine seeing every line the proxy
// logs.
func (b *bench) startProxyWatching(ctx context.Context, name string, extra map[string]string, onLine func(string)) (*proxyProc, error) {
	env := make(map[string]string, len(b.proxyEnv)+len(extra))
	for k, v := range b.proxyEnv {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	p, err := startProxy(ctx, name, b.proxyBin, env, onLine)
	if err != nil {
		return nil, err
	}
	b.procs = append(b.procs, p.proc)
	if env["SESSION_CACHE"] != "false" {
		if err := p.waitListening(ctx); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// addUsers runs `proxy user add` for each account, two at a time (each
// computes argon2id hashes, and there are two cores).
func (b *bench) addUsers(ctx context.Context, accounts []account) error {
	sem := make(chan struct{}, 2)
	errs := make([]error, len(accounts))
	var wg sync.WaitGroup
	for i, a := range accounts {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			cmd := exec.CommandContext(ctx, b.proxyBin, "user", "add", "--device", a.device, "--username", a.username)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + b.db.url}
			cmd.Stdin = strings.NewReader(a.password + "\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("proxy user add %s: %w: %s", a.username, err, strings.TrimSpace(string(out)))
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// cleanup stops every process, then drops the schema (their connections
// gone, nothing holds it) and removes the temporary directory.
func (b *bench) cleanup() error {
	for i := len(b.procs) - 1; i >= 0; i-- {
		b.procs[i].stop()
	}
	var err error
	if b.db != nil {
		err = b.db.drop()
	}
	if b.tmp != "" {
		_ = os.RemoveAll(b.tmp)
	}
	return err
}
