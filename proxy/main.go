// Command proxy is authsidecar's auth proxy: it logs headsets and other
// clients in, issues signed tokens for sessions kept in PostgreSQL (or an
// embedded store for one process), and
// forwards authenticated requests to a backend with the caller's identity in
// headers. See the README for the commands and settings.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/password"
)

// hashWorkerCommand runs a password hashing worker (started by serve).
const hashWorkerCommand = "hash-worker"

// version is stamped at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// After the first signal, the next one gets the default action (exit at
	// once): an operator can always cut a drain short.
	go func() { <-ctx.Done(); stop() }()
	os.Exit(run(ctx, os.Args[1:], environ(), os.Stdin, os.Stdout, os.Stderr))
}

// Exit codes: 0 success, 1 failure, 2 bad usage or a bad setting.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError is bad usage of a command: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// run is the whole program, with its inputs and outputs passed in so that
// tests can drive it.
func run(ctx context.Context, args []string, environ map[string]string, stdin io.Reader, stdout, stderr io.Writer) int {
	// Help needs no settings and opens nothing: it works in any environment.
	if wantsHelp(args) || (len(args) > 0 && args[0] == "help") {
		if err := printHelp(stdout, args); err != nil {
			fmt.Fprintf(stderr, "proxy: %v\n", err)
			return exitUsage
		}
		return exitOK
	}
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "version", "--version":
		fmt.Fprintln(stdout, version)
		return exitOK
	case hashWorkerCommand:
		// Started by serve, talking over stdin and stdout; it needs no
		// settings (see password.ServeWorker).
		if err := password.ServeWorker(stdin, stdout); err != nil {
			fmt.Fprintf(stderr, "proxy: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	handler, ok := commands[cmd]
	if !ok {
		fmt.Fprintf(stderr, "proxy: unknown command %q (proxy help lists the commands)\n", cmd)
		return exitUsage
	}
	cfg, err := loadConfig(environ)
	if err != nil {
		fatal(stderr, cmd, err)
		return exitUsage
	}
	if cmd != "serve" {
		// What an operator command changes is on the audit trail as "cli".
		ctx = auth.WithActor(ctx, auth.Actor{By: "cli"})
	}
	err = handler(ctx, cfg, args, stdin, stdout, stderr)
	var ue *usageError
	var se *settingError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "proxy: %v\n", err)
		return exitUsage
	case errors.As(err, &se):
		fatal(stderr, cmd, err)
		return exitUsage
	default:
		fatal(stderr, cmd, err)
		return exitFailure
	}
}

// fatal writes the error that ends the program, as one line on stderr. The
// server writes it as a JSON log line like all its others, so that a log
// collector keeps it with them (a setting that is wrong is named in the
// message and in "setting"); an operator command, run by a person, writes
// it as plain text.
func fatal(stderr io.Writer, cmd string, err error) {
	msg := oneLine(err.Error())
	if cmd != "serve" {
		fmt.Fprintf(stderr, "proxy: %s\n", msg)
		return
	}
	fields := []zap.Field{zap.String("service", "proxy")}
	var se *settingError
	if errors.As(err, &se) {
		fields = append(fields, zap.String("setting", se.Var))
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

// commandFunc runs one command with the settings already read.
type commandFunc func(ctx context.Context, cfg config, args []string, stdin io.Reader, stdout, stderr io.Writer) error

var commands = map[string]commandFunc{
	"serve":    serve,
	"migrate":  migrateCmd,
	"user":     userCmd,
	"sessions": sessionsCmd,
	"events":   eventsCmd,
}

func environ() map[string]string {
	m := make(map[string]string)
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
