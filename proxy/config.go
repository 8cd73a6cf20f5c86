package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zapcore"

	"github.com/authsidecar/authsidecar/proxy/internal/gateway"
	"github.com/authsidecar/authsidecar/proxy/internal/keyseal"
	"github.com/authsidecar/authsidecar/proxy/internal/token"
	"github.com/authsidecar/authsidecar/proxy/internal/tracing"
)

// config is every setting of the proxy, read once from the environment.
type config struct {
	// The help tags are what proxy --help says of each setting.
	ListenAddr       string        `env:"LISTEN_ADDR" envDefault:":8080" help:"where headsets and clients connect"`
	UpstreamURL      string        `env:"UPSTREAM_URL" envDefault:"http://127.0.0.1:9000" help:"the backend authenticated requests go to"`
	DatabaseURL      string        `env:"DATABASE_URL" help:"postgres://…: users, devices, sessions; unset: the embedded store in DATA_DIR"`
	TokenTTL         time.Duration `env:"TOKEN_TTL" envDefault:"24h" help:"lifetime of a session from login or its last refresh"`
	SessionMaxAge    time.Duration `env:"SESSION_MAX_AGE" envDefault:"168h" help:"no refresh extends a session past this age from login"`
	RefreshGrace     time.Duration `env:"REFRESH_GRACE" envDefault:"10s" help:"how long the token replaced by a refresh still works"`
	SigningKeyFile   string        `env:"SIGNING_KEY_FILE" help:"PEM file of Ed25519 keys, the first signs; unset: a key generated once and kept in the store"`
	LoginMaxFailures int           `env:"LOGIN_MAX_FAILURES" envDefault:"5" help:"consecutive wrong passwords before an account is locked"`
	LoginLockout     time.Duration `env:"LOGIN_LOCKOUT" envDefault:"1m" help:"first lockout (at most 1h); each further one doubles, up to 1h"`
	AutoMigrate      bool          `env:"AUTO_MIGRATE" envDefault:"true" help:"apply pending migrations at start"`
	CleanupInterval  time.Duration `env:"CLEANUP_INTERVAL" envDefault:"10m" help:"how often expired sessions are deleted"`
	LogLevel         string        `env:"LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`
	MetricsAddr      string        `env:"METRICS_ADDR" envDefault:":9464" help:"Prometheus /metrics, on its own port (not Prometheus's own 9090); set empty to turn it off"`
	DataDir          string        `env:"DATA_DIR" envDefault:"./data" help:"where the embedded store lives when DATABASE_URL is unset"`
	SessionCache     bool          `env:"SESSION_CACHE" envDefault:"true" help:"cache verified tokens and live sessions; false checks every request in the store"`
	DrainDelay       time.Duration `env:"DRAIN_DELAY" envDefault:"0s" help:"after SIGTERM, keep serving this long with /readyz at 503 before draining"`
	GCHeapFloorMiB   int           `env:"GC_HEAP_FLOOR_MIB" envDefault:"32" help:"heap the garbage collector lets grow before collecting, in MiB (0 to 1024; 0: off)"`
	PublicRoutes     string        `env:"PUBLIC_ROUTES" help:"ServeMux patterns ([METHOD ]/path, comma-separated) forwarded without a token"`
	AdminRoutes      string        `env:"ADMIN_ROUTES" help:"ServeMux patterns forwarded for admin sessions only"`
	IdleTimeout      time.Duration `env:"SESSION_IDLE_TIMEOUT" envDefault:"0" help:"a session unused this long is refused on every replica; 0 turns it off"`
	OneUserPerDevice bool          `env:"ONE_USER_PER_DEVICE" envDefault:"false" help:"a sign-in on a device ends the sessions of every other user there"`
	TrustedProxies   string        `env:"TRUSTED_PROXIES" help:"CIDRs of the proxies in front whose X-Forwarded-For names the client (comma-separated)"`
	AuditRetention   time.Duration `env:"AUDIT_RETENTION" envDefault:"8760h" help:"how long audit events are kept; 0 keeps them forever"`

	SigningKeyEncryptionKeyFile string `env:"SIGNING_KEY_ENCRYPTION_KEY_FILE" help:"file of 32 random bytes (raw, hex or base64) that encrypts the signing key kept in the store; unused with SIGNING_KEY_FILE"`
	// DatabaseListenURL is for the one LISTEN connection, which needs a
	// session of its own on the server: a pooler in transaction mode
	// (PgBouncer) would hand the LISTEN to a server connection and then
	// give that connection to someone else.
	DatabaseListenURL string `env:"DATABASE_LISTEN_URL" help:"a direct postgres://… connection for LISTEN when DATABASE_URL goes through a pooler such as PgBouncer; default: DATABASE_URL"`
	// The bounds on waiting for the database (see docs/architecture.md,
	// "When the database hangs").
	DatabaseStatementTimeout time.Duration `env:"DATABASE_STATEMENT_TIMEOUT" envDefault:"5s" help:"longest any one database statement may take before it fails (0: no bound)"`
	SessionCheckTimeout      time.Duration `env:"SESSION_CHECK_TIMEOUT" envDefault:"2s" help:"a request whose session cannot be checked in the database within this gets 503"`
	ListenerHealthInterval   time.Duration `env:"LISTENER_HEALTH_INTERVAL" envDefault:"2s" help:"the change listener is checked after this long without a notification, and given up (caches emptied) when the check takes longer"`

	upstream    *url.URL       // parsed UpstreamURL
	logLevel    zapcore.Level  // parsed LogLevel
	signingKeys []token.Key    // read from SigningKeyFile, when set
	rules       *gateway.Rules // compiled PublicRoutes and AdminRoutes
	trusted     []netip.Prefix // parsed TrustedProxies
	keySeal     *keyseal.Key   // read from SigningKeyEncryptionKeyFile, when set

	tracing tracing.Settings // from OpenTelemetry's OTEL_* variables
}

// maxHeapFloorMiB bounds GC_HEAP_FLOOR_MIB: the floor is garbage the
// proxy may keep, and a sidecar's memory is counted in hundreds of MiB.
const maxHeapFloorMiB = 1024

// maxLockout caps a lockout, however often it doubled.
const maxLockout = time.Hour

// settingError names the variable that is wrong; main prints it as one line
// and exits 2.
type settingError struct {
	Var string
	Err error
}

func (e *settingError) Error() string { return fmt.Sprintf("invalid setting %s: %v", e.Var, e.Err) }
func (e *settingError) Unwrap() error { return e.Err }

// loadConfig reads the settings from environ (the process environment in
// production, a map in tests) and checks every one of them.
func loadConfig(environ map[string]string) (config, error) {
	var c config
	if err := env.ParseWithOptions(&c, env.Options{Environment: environ}); err != nil {
		return c, envError(err, c)
	}
	// env gives an empty value its default, as if it were unset; for
	// METRICS_ADDR, set and empty means no metrics listener at all.
	if v, ok := environ["METRICS_ADDR"]; ok && strings.TrimSpace(v) == "" {
		c.MetricsAddr = ""
	}
	if err := c.validate(); err != nil {
		return c, err
	}
	// OpenTelemetry's own variables: the SDK reads them, this checks them.
	ts, err := tracing.Parse(environ)
	c.tracing = ts
	return c, asSettingError(err)
}

func (c *config) validate() error {
	bad := func(v string, format string, args ...any) error {
		return &settingError{Var: v, Err: fmt.Errorf(format, args...)}
	}
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return bad("LISTEN_ADDR", "%q is not host:port", c.ListenAddr)
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return bad("METRICS_ADDR", "%q is not host:port", c.MetricsAddr)
		}
	}
	u, err := url.Parse(c.UpstreamURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("UPSTREAM_URL", "%q is not an absolute http:// or https:// URL", c.UpstreamURL)
	}
	c.upstream = u
	if c.DatabaseURL == "" {
		// The embedded store: its directory must be usable before anything
		// else happens.
		if strings.TrimSpace(c.DataDir) == "" {
			return bad("DATA_DIR", "empty (the embedded store needs a directory when DATABASE_URL is unset)")
		}
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return bad("DATA_DIR", "%q cannot be created: %v", c.DataDir, err)
		}
	} else if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
		// pgx's message may echo the URL, password included: say only what
		// is wrong.
		return bad("DATABASE_URL", "not a valid postgres:// URL or connection string")
	}
	if c.DatabaseListenURL != "" {
		if c.DatabaseURL == "" {
			return bad("DATABASE_LISTEN_URL", "set without DATABASE_URL (the embedded store has nothing to listen to)")
		}
		if _, err := pgxpool.ParseConfig(c.DatabaseListenURL); err != nil {
			return bad("DATABASE_LISTEN_URL", "not a valid postgres:// URL or connection string")
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		zero bool // whether 0 is allowed
	}{
		{"TOKEN_TTL", c.TokenTTL, false},
		{"SESSION_MAX_AGE", c.SessionMaxAge, false},
		{"REFRESH_GRACE", c.RefreshGrace, true},
		{"DRAIN_DELAY", c.DrainDelay, true},
		{"LOGIN_LOCKOUT", c.LoginLockout, false},
		{"CLEANUP_INTERVAL", c.CleanupInterval, false},
		{"DATABASE_STATEMENT_TIMEOUT", c.DatabaseStatementTimeout, true},
		{"SESSION_CHECK_TIMEOUT", c.SessionCheckTimeout, false},
		{"LISTENER_HEALTH_INTERVAL", c.ListenerHealthInterval, false},
	} {
		if d.v < 0 || (d.v == 0 && !d.zero) {
			return bad(d.name, "must be a positive duration such as 30s, 10m or 24h")
		}
	}
	if c.DrainDelay >= drainTimeout {
		return bad("DRAIN_DELAY", "must be shorter than the %s drain deadline", drainTimeout)
	}
	if c.SessionMaxAge < c.TokenTTL {
		return bad("SESSION_MAX_AGE", "%s is shorter than TOKEN_TTL %s", c.SessionMaxAge, c.TokenTTL)
	}
	if c.LoginLockout > maxLockout {
		return bad("LOGIN_LOCKOUT", "at most %s (lockouts double up to that cap)", maxLockout)
	}
	if c.GCHeapFloorMiB < 0 || c.GCHeapFloorMiB > maxHeapFloorMiB {
		return bad("GC_HEAP_FLOOR_MIB", "must be a number of MiB from 0 (off) to %d", maxHeapFloorMiB)
	}
	if c.LoginMaxFailures < 1 {
		return bad("LOGIN_MAX_FAILURES", "must be at least 1")
	}
	rules, err := gateway.NewRules(splitList(c.PublicRoutes), splitList(c.AdminRoutes))
	if err != nil {
		name := "PUBLIC_ROUTES"
		var re *gateway.RuleError
		if errors.As(err, &re) && re.Admin {
			name = "ADMIN_ROUTES"
		}
		return bad(name, "%v", err)
	}
	c.rules = rules
	if c.trusted, err = gateway.ParseTrustedProxies(c.TrustedProxies); err != nil {
		return bad("TRUSTED_PROXIES", "not a comma-separated list of CIDRs such as 10.0.0.0/8: %v", err)
	}
	if c.IdleTimeout < 0 || (c.IdleTimeout > 0 && c.IdleTimeout < time.Second) {
		return bad("SESSION_IDLE_TIMEOUT", "must be 0 (off) or at least 1s, such as 15m")
	}
	if c.AuditRetention < 0 {
		return bad("AUDIT_RETENTION", "must be 0 (keep forever) or a positive duration such as 8760h")
	}
	lvl, err := zapcore.ParseLevel(c.LogLevel)
	if err != nil || lvl > zapcore.ErrorLevel {
		return bad("LOG_LEVEL", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	c.logLevel = lvl
	if c.SigningKeyFile != "" {
		// Read now, so that an unreadable or wrong key file stops the
		// program before it does anything else.
		data, err := os.ReadFile(c.SigningKeyFile)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return bad("SIGNING_KEY_FILE", "cannot read %s: %v", c.SigningKeyFile, err)
		}
		keys, err := token.ParsePEM(data)
		if err != nil {
			return bad("SIGNING_KEY_FILE", "%s: %v", c.SigningKeyFile, err)
		}
		c.signingKeys = keys
	}
	if c.SigningKeyEncryptionKeyFile != "" {
		// Read now, like the key file: a key that cannot open the stored
		// signing key must stop the program, never let it make a new one.
		data, err := os.ReadFile(c.SigningKeyEncryptionKeyFile)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return bad("SIGNING_KEY_ENCRYPTION_KEY_FILE", "cannot read %s: %v", c.SigningKeyEncryptionKeyFile, err)
		}
		k, err := keyseal.ParseKey(data)
		if err != nil {
			return bad("SIGNING_KEY_ENCRYPTION_KEY_FILE", "%s: %v", c.SigningKeyEncryptionKeyFile, err)
		}
		c.keySeal = k
	}
	return nil
}

// listenURL is where the session-change listener connects.
func (c config) listenURL() string {
	if c.DatabaseListenURL != "" {
		return c.DatabaseListenURL
	}
	return c.DatabaseURL
}

// splitList splits a comma-separated setting, dropping blanks around and
// between its items.
func splitList(v string) []string {
	var items []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

// envError turns env's errors, which name Go fields, into a settingError
// that names the environment variable.
func envError(err error, c config) error {
	var agg env.AggregateError
	if errors.As(err, &agg) && len(agg.Errors) > 0 {
		err = agg.Errors[0]
	}
	var pe env.ParseError
	if errors.As(err, &pe) {
		name := pe.Name
		if f, ok := reflect.TypeOf(c).FieldByName(pe.Name); ok {
			name = f.Tag.Get("env")
		}
		return &settingError{Var: name, Err: parseCause(pe)}
	}
	return err
}

func parseCause(pe env.ParseError) error {
	switch pe.Type {
	case reflect.TypeOf(time.Duration(0)):
		return errors.New("not a duration (use a number with a unit: 30s, 10m, 24h)")
	case reflect.TypeOf(true):
		return errors.New("not a boolean (true or false)")
	case reflect.TypeOf(0):
		return errors.New("not a whole number")
	}
	return pe.Err
}
