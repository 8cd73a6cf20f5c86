package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zapcore"

	"github.com/authsidecar/authsidecar/storage-backend/internal/sqlite"
	"github.com/authsidecar/authsidecar/storage-backend/internal/tracing"
)

// defaultConnectTimeout applies when DATABASE_URL sets no connect_timeout.
const defaultConnectTimeout = 10 * time.Second

// config holds every setting, read once from the environment in main.
// The help tags are what storage-backend --help says of each.
type config struct {
	ListenAddr  string `env:"LISTEN_ADDR" envDefault:"127.0.0.1:9000" help:"host:port to listen on; loopback, so that only the proxy beside it reaches it"`
	DatabaseURL string `env:"DATABASE_URL" help:"postgres://…: the records live in PostgreSQL; unset: the embedded store in DATA_DIR"`
	// DataDir holds the embedded store, used when DatabaseURL is empty.
	DataDir      string `env:"DATA_DIR" envDefault:"./data" help:"directory of the embedded store (storage.db), when DATABASE_URL is unset"`
	MaxBodyBytes int64  `env:"MAX_BODY_BYTES" envDefault:"1048576" help:"largest accepted request body in bytes; larger ones get 413"`
	AutoMigrate  bool   `env:"AUTO_MIGRATE" envDefault:"true" help:"apply pending migrations before listening"`
	LogLevel     string `env:"LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`
	// DrainDelay keeps serving for a while after SIGTERM, with /readyz
	// answering 503, so that load balancers stop sending traffic first.
	DrainDelay time.Duration `env:"DRAIN_DELAY" envDefault:"0s" help:"after SIGTERM, keep serving this long with /readyz at 503 before draining (below 20s)"`

	// Derived from the settings above while checking them. pool is nil
	// when the embedded store is used; dbPath is then its file, set by
	// prepareDataDir.
	pool   *pgxpool.Config
	level  zapcore.Level
	dbPath string

	tracing tracing.Settings // from OpenTelemetry's OTEL_* variables
}

// settingError names the variable that is wrong, so that an operator can fix
// it from the one line the program prints.
type settingError struct {
	Var     string
	Problem string
}

func (e *settingError) Error() string {
	return "invalid setting " + e.Var + ": " + e.Problem
}

// missingError is a required setting that is unset.
type missingError struct {
	Var  string
	Hint string
}

func (e *missingError) Error() string {
	return e.Var + ": required (" + e.Hint + ")"
}

// loadConfig reads and checks the settings from environ (variable name to
// value). It takes a map rather than reading the process environment so
// that tests can run in parallel.
func loadConfig(environ map[string]string) (config, error) {
	if environ == nil {
		environ = map[string]string{} // env falls back to os.Environ for nil
	}
	var cfg config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: environ}); err != nil {
		return config{}, settingFromEnvError(err, environ)
	}

	if cfg.DatabaseURL != "" {
		pool, err := pgxpool.ParseConfig(cfg.DatabaseURL)
		if err != nil {
			// pgx's message shows the URL with its password masked.
			return config{}, &settingError{Var: "DATABASE_URL", Problem: err.Error()}
		}
		if pool.ConnConfig.ConnectTimeout == 0 {
			// A database that does not answer should fail a start, a command or
			// a readiness probe within seconds, not after the system's TCP timeout.
			pool.ConnConfig.ConnectTimeout = defaultConnectTimeout
		}
		cfg.pool = pool
	} else if strings.TrimSpace(cfg.DataDir) == "" {
		return config{}, &settingError{Var: "DATA_DIR",
			Problem: "is empty; set it to a directory for the embedded store, or set DATABASE_URL"}
	}

	if err := checkListenAddr(cfg.ListenAddr); err != nil {
		return config{}, &settingError{Var: "LISTEN_ADDR", Problem: fmt.Sprintf("%q %v", cfg.ListenAddr, err)}
	}
	if cfg.MaxBodyBytes <= 0 {
		return config{}, &settingError{Var: "MAX_BODY_BYTES",
			Problem: fmt.Sprintf("%q must be greater than 0", environ["MAX_BODY_BYTES"])}
	}
	if cfg.DrainDelay < 0 || cfg.DrainDelay >= drainTimeout {
		return config{}, &settingError{Var: "DRAIN_DELAY",
			Problem: fmt.Sprintf("%q must be between 0s and the %s drain deadline", environ["DRAIN_DELAY"], drainTimeout)}
	}
	switch strings.ToLower(cfg.LogLevel) {
	case "debug":
		cfg.level = zapcore.DebugLevel
	case "info":
		cfg.level = zapcore.InfoLevel
	case "warn":
		cfg.level = zapcore.WarnLevel
	case "error":
		cfg.level = zapcore.ErrorLevel
	default:
		return config{}, &settingError{Var: "LOG_LEVEL",
			Problem: fmt.Sprintf("%q is not one of debug, info, warn, error", cfg.LogLevel)}
	}
	// OpenTelemetry's own variables: the SDK reads them, this checks them.
	ts, err := tracing.Parse(environ)
	if err != nil {
		return config{}, asSettingError(err)
	}
	cfg.tracing = ts
	return cfg, nil
}

// asSettingError turns the tracing package's SettingError into the one
// main reports with exit 2.
func asSettingError(err error) error {
	var te *tracing.SettingError
	if errors.As(err, &te) {
		return &settingError{Var: te.Var, Problem: te.Err.Error()}
	}
	return err
}

// prepareDataDir makes sure that the embedded store can live in dir: it
// creates dir (for its owner only) if it is missing, and checks that files
// can be created in it and that the database file can be opened for
// writing. A DATA_DIR that fails this is a bad setting, reported before
// anything starts, rather than a failure at the first write. It returns the
// database file's path.
func prepareDataDir(dir string) (string, error) {
	bad := func(problem string, err error) error {
		return &settingError{Var: "DATA_DIR", Problem: fmt.Sprintf("%q %s: %v", dir, problem, err)}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", bad("cannot be created", err)
	}
	// SQLite creates its -wal and -shm files beside the database.
	probe, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return "", bad("is not writable", err)
	}
	_ = probe.Close()
	_ = os.Remove(probe.Name())
	path := filepath.Join(dir, sqlite.FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", bad("is not writable", err)
	}
	_ = f.Close()
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", bad("cannot be resolved", err)
	}
	return abs, nil
}

func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("is not host:port (e.g. 127.0.0.1:9000 or :9000)")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return errors.New("has no valid port number")
	}
	return nil
}

// settingFromEnvError turns env's first error into a settingError. env names
// the Go field (ParseError.Name), so the variable is found from the field's
// env tag.
func settingFromEnvError(err error, environ map[string]string) error {
	var agg env.AggregateError
	if errors.As(err, &agg) && len(agg.Errors) > 0 {
		err = agg.Errors[0]
	}
	var parseErr env.ParseError
	if errors.As(err, &parseErr) {
		name := parseErr.Name
		if f, ok := reflect.TypeFor[config]().FieldByName(parseErr.Name); ok {
			name, _, _ = strings.Cut(f.Tag.Get("env"), ",")
		}
		value := environ[name]
		if parseErr.Type == reflect.TypeFor[time.Duration]() {
			// A bare number is the likely mistake: say how to write one.
			return &settingError{Var: name, Problem: fmt.Sprintf("%q is not a duration; write it like 5s or 1m", value)}
		}
		switch parseErr.Type.Kind() {
		case reflect.Int, reflect.Int64:
			return &settingError{Var: name, Problem: fmt.Sprintf("%q is not a number", value)}
		case reflect.Bool:
			return &settingError{Var: name, Problem: fmt.Sprintf("%q is not true or false", value)}
		default:
			return &settingError{Var: name, Problem: fmt.Sprintf("%q: %v", value, parseErr.Err)}
		}
	}
	var notSet env.VarIsNotSetError
	if errors.As(err, &notSet) {
		return &missingError{Var: notSet.Key, Hint: "not set"}
	}
	var empty env.EmptyVarError
	if errors.As(err, &empty) {
		return &missingError{Var: empty.Key, Hint: "empty"}
	}
	return fmt.Errorf("settings: %w", err)
}
