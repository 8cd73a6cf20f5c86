// Command storage-backend is the plain backend behind the auth proxy: it
// stores JSON records per device, in PostgreSQL or, when no DATABASE_URL is
// set, in an embedded SQLite database in DATA_DIR, and trusts the identity
// headers the proxy sets, so it must only be reachable through the proxy
// (it listens on the loopback interface by default).
//
// Usage:
//
//	storage-backend [serve]                   serve the storage API
//	storage-backend migrate [up|down|status]  apply, roll back one, or list migrations
//	storage-backend version                   print the version
//	storage-backend help [COMMAND]            the commands and settings
//
// Settings come from the environment: LISTEN_ADDR, DATABASE_URL (or
// DATA_DIR), MAX_BODY_BYTES, AUTO_MIGRATE, LOG_LEVEL and DRAIN_DELAY (see
// README.md). Exit status is 0 on success, 1 on failure and 2 on bad usage
// or settings.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authsidecar/authsidecar/storage-backend/internal/httpapi"
	"github.com/authsidecar/authsidecar/storage-backend/internal/schema"
	"github.com/authsidecar/authsidecar/storage-backend/internal/tracing"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

// drainTimeout is how long in-flight requests get to finish after SIGTERM.
// It stays below Kubernetes' default 30s grace period so that the pool is
// closed cleanly before the process would be killed.
const drainTimeout = 20 * time.Second

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args[1:], environMap(os.Environ()), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is what a command line asks for.
type command func(ctx context.Context, cfg config, logger *zap.Logger, stdout, stderr io.Writer) error

// run is the whole program with its inputs passed in: ctx ends on SIGTERM
// or SIGINT. It returns the exit code.
func run(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	// Help and version need no settings and open nothing.
	if wantsHelp(args) || (len(args) > 0 && args[0] == "help") {
		if err := printHelp(stdout, args); err != nil {
			fmt.Fprintf(stderr, "storage-backend: %v (see storage-backend help)\n", err)
			return exitUsage
		}
		return exitOK
	}
	if len(args) > 0 && (args[0] == "version" || args[0] == "--version") {
		if len(args) > 1 {
			fmt.Fprintf(stderr, "storage-backend: version takes no arguments, got %q (see storage-backend help)\n", strings.Join(args[1:], " "))
			return exitUsage
		}
		fmt.Fprintln(stdout, version)
		return exitOK
	}
	cmd, err := parseArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "storage-backend: %v (see storage-backend help)\n", err)
		return exitUsage
	}
	serving := len(args) == 0 || args[0] == "serve"
	cfg, err := loadConfig(environ)
	if err == nil && cfg.pool == nil {
		cfg.dbPath, err = prepareDataDir(cfg.DataDir)
	}
	if err != nil {
		fatal(stderr, serving, err)
		return exitUsage
	}
	logger := newLogger(cfg.level, stderr)
	if serving {
		logger = logger.With(zap.String("service", "storage-backend"))
	}
	defer func() { _ = logger.Sync() }()

	if err := cmd(ctx, cfg, logger, stdout, stderr); err != nil {
		fatal(stderr, serving, err)
		var se *settingError
		if errors.As(err, &se) {
			return exitUsage
		}
		return exitFailure
	}
	return exitOK
}

// fatal writes the error that ends the program, as one line on stderr. The
// server writes it as a JSON log line like all its others, so that a log
// collector keeps it with them (a setting that is wrong is named in the
// message and in "setting"); a migrate command, run by a person, writes it
// as plain text.
func fatal(stderr io.Writer, serving bool, err error) {
	msg := oneLine(err)
	if !serving {
		fmt.Fprintf(stderr, "storage-backend: %s\n", msg)
		return
	}
	fields := []zap.Field{zap.String("service", "storage-backend")}
	var se *settingError
	var me *missingError
	switch {
	case errors.As(err, &se):
		fields = append(fields, zap.String("setting", se.Var))
	case errors.As(err, &me):
		fields = append(fields, zap.String("setting", me.Var))
	}
	// The exit code is run's to return: the fatal entry must not exit.
	log := newLogger(zapcore.InfoLevel, stderr).WithOptions(zap.WithFatalHook(keepRunning{}))
	if ce := log.Check(zapcore.FatalLevel, msg); ce != nil {
		ce.Write(fields...)
	}
}

// keepRunning is a fatal hook that returns instead of exiting.
type keepRunning struct{}

func (keepRunning) OnWrite(*zapcore.CheckedEntry, []zapcore.Field) {}

func parseArgs(args []string) (command, error) {
	if len(args) == 0 {
		return serve, nil
	}
	switch name, rest := args[0], args[1:]; name {
	case "serve":
		if len(rest) > 0 {
			return nil, fmt.Errorf("serve takes no arguments, got %q", strings.Join(rest, " "))
		}
		return serve, nil
	case "migrate":
		if len(rest) > 1 {
			return nil, fmt.Errorf("migrate takes one of up, down, status; got %q", strings.Join(rest, " "))
		}
		sub := "up"
		if len(rest) == 1 {
			sub = rest[0]
		}
		switch sub {
		case "up":
			return migrate(schema.Up), nil
		case "down":
			return migrate(schema.Down), nil
		case "status":
			return migrateStatus, nil
		}
		return nil, fmt.Errorf("unknown migrate command %q; want up, down or status", sub)
	default:
		return nil, fmt.Errorf("unknown command %q", name)
	}
}

func serve(ctx context.Context, cfg config, logger *zap.Logger, stdout, _ io.Writer) error {
	tp, stopTracing, err := tracing.Setup(ctx, cfg.tracing, tracing.Options{Service: "storage-backend", Version: version, Console: stdout, Log: logger})
	if err != nil {
		return asSettingError(err)
	}
	defer flushTraces(stopTracing, logger) // last: after the drain, the spans of the drained requests
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	// Deferred first, so it runs last: after the server has drained.
	defer db.close()
	db.logStore(logger)

	if cfg.AutoMigrate {
		applied, err := db.migrate(ctx, schema.Up)
		if err != nil {
			return err
		}
		for _, m := range applied {
			logger.Info("migration applied", zap.Int64("version", m.Version), zap.String("name", m.Name))
		}
	}

	api := &httpapi.API{
		Store:        db.store,
		Logger:       logger,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Ready:        db.ready,
	}
	errorLog, err := zap.NewStdLogAt(logger.Named("http"), zapcore.WarnLevel)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           tracing.Handler(api, tp, tracing.Probe),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errorLog,
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	logger.Info("listening", zap.String("addr", ln.Addr().String()), zap.String("version", version))

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	// Readiness fails first so that no new traffic is sent our way, then the
	// requests already here get drainTimeout to finish.
	logger.Info("draining", zap.Duration("drain_delay", cfg.DrainDelay), zap.Duration("drain_timeout", drainTimeout))
	api.Drain()
	time.Sleep(cfg.DrainDelay)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("requests still running after %s were cut off: %w", drainTimeout, err)
	}
	logger.Info("stopped")
	return nil
}

// flushTraces sends the spans not yet exported, within a few seconds.
func flushTraces(stop func(context.Context) error, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		log.Warn("tracing: spans not sent at exit", zap.Error(err))
	}
}

func migrate(dir schema.Direction) command {
	return func(ctx context.Context, cfg config, _ *zap.Logger, stdout, stderr io.Writer) error {
		db, err := openForCommand(ctx, cfg, stderr)
		if err != nil {
			return err
		}
		defer db.close()

		done, err := db.migrate(ctx, dir)
		if err != nil {
			return err
		}
		if len(done) == 0 {
			fmt.Fprintln(stdout, "no pending migrations")
		}
		verb := "applied"
		if dir == schema.Down {
			verb = "rolled back"
		}
		for _, m := range done {
			fmt.Fprintf(stdout, "%s %d %s\n", verb, m.Version, m.Name)
		}
		return nil
	}
}

func migrateStatus(ctx context.Context, cfg config, _ *zap.Logger, stdout, stderr io.Writer) error {
	db, err := openForCommand(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer db.close()

	list, err := db.status(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tSTATE\tAPPLIED AT")
	for _, m := range list {
		state, at := "pending", "-"
		if m.Applied {
			state, at = "applied", m.AppliedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", m.Version, m.Name, state, at)
	}
	return tw.Flush()
}

// openForCommand opens the store for a migrate command and, once it
// answers, says on stderr which one it is: a command run without the
// server's DATABASE_URL or DATA_DIR by mistake says so, while stdout stays
// the command's own output.
func openForCommand(ctx context.Context, cfg config, stderr io.Writer) (*database, error) {
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := db.ping(ctx); err != nil {
		db.close()
		return nil, err
	}
	fmt.Fprintf(stderr, "store: %s %s\n", db.kind, db.where)
	return db, nil
}

// newLogger writes JSON lines at level and above to w.
func newLogger(level zapcore.Level, w io.Writer) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "time"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	// Durations in seconds (a number), as the proxy writes them and as log
	// queries compare them.
	enc.EncodeDuration = zapcore.SecondsDurationEncoder
	out := zapcore.Lock(zapcore.AddSync(w))
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), out, level)
	return zap.New(core, zap.ErrorOutput(out))
}

func environMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// oneLine keeps an error to the one line an operator is promised.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
