package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authsidecar/authsidecar/proxy/internal/identity"
	"github.com/authsidecar/authsidecar/proxy/internal/keyseal"
	"github.com/authsidecar/authsidecar/proxy/internal/metrics"
	"github.com/authsidecar/authsidecar/proxy/internal/password"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
	"github.com/authsidecar/authsidecar/proxy/internal/schema"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
	"github.com/authsidecar/authsidecar/proxy/internal/sqlite"
	"github.com/authsidecar/authsidecar/proxy/internal/store"
	"github.com/authsidecar/authsidecar/proxy/internal/token"
	"github.com/authsidecar/authsidecar/proxy/internal/tracing"
)

// issuer is the "iss" of every token; verification requires it.
const issuer = "authsidecar"

var (
	_ store.Store = (*postgres.Store)(nil)
	_ store.Store = (*sqlite.Store)(nil)
)

// app is the wiring shared by the server and the operator commands.
type app struct {
	cfg      config
	log      *zap.Logger
	now      func() time.Time
	pool     *pgxpool.Pool // nil on the embedded store
	embedded *sqlite.Store // nil on PostgreSQL
	store    store.Store
	migrator *schema.Migrator
	metrics  *metrics.Metrics     // nil for operator commands
	cache    *session.Cache       // nil unless serving with SESSION_CACHE
	tracing  trace.TracerProvider // nil unless serving with tracing on
}

func newLogger(level zapcore.Level, w io.Writer) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "time"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	// Durations in seconds (a number), as the storage backend writes them
	// and as log queries compare them.
	enc.EncodeDuration = zapcore.SecondsDurationEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core)
}

// openApp connects to the database and, with AUTO_MIGRATE, brings the
// schema up to date. wait is how long to keep retrying a database that does
// not answer yet (a pod that starts before its database).
func openApp(ctx context.Context, cfg config, log *zap.Logger, m *metrics.Metrics, wait time.Duration) (*app, error) {
	a := &app{cfg: cfg, log: log, now: time.Now, metrics: m}
	if err := a.openStore(ctx, wait); err != nil {
		return nil, err
	}
	if cfg.AutoMigrate {
		n, err := a.migrator.Up(ctx)
		if err != nil {
			a.close()
			return nil, err
		}
		if n > 0 {
			log.Info("migrations applied", zap.Int("count", n))
		}
	}
	return a, nil
}

// openStore opens PostgreSQL when DATABASE_URL is set, else the embedded
// store in DATA_DIR.
func (a *app) openStore(ctx context.Context, wait time.Duration) error {
	cfg, log := a.cfg, a.log
	if cfg.DatabaseURL == "" {
		st, err := sqlite.Open(ctx, cfg.DataDir)
		if err != nil {
			return fmt.Errorf("embedded store in DATA_DIR %s: %w", cfg.DataDir, err)
		}
		a.embedded, a.store = st, st
		if a.migrator, err = sqlite.NewMigrator(ctx, st); err != nil {
			a.close()
			return err
		}
		log.Info("store: embedded SQLite", zap.String("path", st.Path()),
			zap.String("note", "for one process only; set DATABASE_URL to use PostgreSQL, the store for several replicas"))
		return nil
	}
	deadline := time.Now().Add(wait)
	for backoff := 250 * time.Millisecond; ; backoff = min(backoff*2, 5*time.Second) {
		pool, err := postgres.Open(ctx, cfg.DatabaseURL, a.metrics.QueryTracer(), postgres.WithStatementTimeout(cfg.DatabaseStatementTimeout))
		if err == nil {
			a.pool = pool
			break
		}
		if time.Now().Add(backoff).After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("database: %w", err)
		}
		log.Warn("database not reachable yet; retrying", zap.Error(err), zap.Duration("in", backoff))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}
	a.store = postgres.NewStore(a.pool)
	log.Info("store: PostgreSQL", zap.String("database", a.storeWhere()))
	log.Info("database query mode", zap.Stringer("query_mode", a.pool.Config().ConnConfig.DefaultQueryExecMode))
	mig, err := postgres.NewMigrator(ctx, a.pool)
	if err != nil {
		a.close()
		return err
	}
	a.migrator = mig
	return nil
}

// storeName says which store is open, for a person: "SQLite" and the
// file's path, or "PostgreSQL" and host:port/database (never the
// password).
func (a *app) storeName() string {
	if a.embedded != nil {
		return "SQLite " + a.embedded.Path()
	}
	return "PostgreSQL " + a.storeWhere()
}

// storeWhere is the PostgreSQL server and database, without user or
// password.
func (a *app) storeWhere() string {
	c := a.pool.Config().ConnConfig
	return net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))) + "/" + c.Database
}

func (a *app) close() {
	if a.migrator != nil {
		_ = a.migrator.Close()
	}
	if a.pool != nil {
		a.pool.Close()
	}
	if a.embedded != nil {
		_ = a.embedded.Close()
	}
	_ = a.log.Sync()
}

// ready reports whether the database answers and the schema is current.
func (a *app) ready(ctx context.Context) error {
	if err := a.store.Ping(ctx); err != nil {
		return err
	}
	ok, err := a.migrator.Current(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("database schema is not current: run proxy migrate up")
	}
	return nil
}

// signingKeyPurpose binds a sealed signing key to its use (see keyseal).
const signingKeyPurpose = "authsidecar proxy token signing key"

// signer loads the signing keys: from SIGNING_KEY_FILE when set, else the
// generated key kept in the database (made on first start). With
// SIGNING_KEY_ENCRYPTION_KEY_FILE, the generated key is sealed before it is
// stored, so the database holds no key it could sign with on its own.
func (a *app) signer(ctx context.Context) (*token.Signer, error) {
	const encVar = "SIGNING_KEY_ENCRYPTION_KEY_FILE"
	keys, seal := a.cfg.signingKeys, a.cfg.keySeal
	if keys != nil && seal != nil {
		a.log.Info(encVar + " has no effect: the signing keys come from SIGNING_KEY_FILE")
	}
	if keys == nil {
		if f := a.cfg.SigningKeyEncryptionKeyFile; f != "" {
			// The same rule as for SIGNING_KEY_FILE: this key is as good
			// as the signing key to whoever also reads the database.
			if fi, err := os.Stat(f); err == nil && fi.Mode().Perm()&0o027 != 0 {
				a.log.Warn(encVar+" is readable or writable by others; restrict it (chmod 600)",
					zap.String("path", f), zap.String("mode", fi.Mode().Perm().String()))
			}
		}
		stored, err := a.store.SigningKeyPEM(ctx, func() (string, []byte, error) {
			k, err := token.GenerateKey()
			if err != nil {
				return "", nil, err
			}
			p, err := k.MarshalPEM()
			if err == nil && seal != nil {
				p = seal.Seal(p, signingKeyPurpose)
			}
			return k.ID, p, err
		})
		if err != nil {
			return nil, err
		}
		plain := stored
		switch sealed := keyseal.IsSealed(stored); {
		case sealed && seal == nil:
			// Never generate a key in its place: every token would stop
			// working, and the sealed key would still be there.
			which := "the key"
			if id := keyseal.SealedBy(stored); id != "" {
				which = "the key of id " + id
			}
			return nil, &settingError{Var: encVar, Err: fmt.Errorf(
				"unset, but the signing key in the database is encrypted; set it to the file of %s", which)}
		case sealed:
			plain, err = seal.Open(stored, signingKeyPurpose)
			if errors.Is(err, keyseal.ErrWrongKey) {
				return nil, &settingError{Var: encVar, Err: fmt.Errorf("%s cannot decrypt the signing key in the database: %w",
					a.cfg.SigningKeyEncryptionKeyFile, err)}
			}
			if err != nil {
				return nil, fmt.Errorf("stored signing key: %w", err)
			}
			a.log.Info("signing key in the database is encrypted", zap.String("encryption_key_id", seal.ID()))
		case seal != nil:
			// An install from before the setting: the store cannot
			// replace a key, and a new one would log every headset out.
			a.log.Warn("the signing key in the database is stored unencrypted; "+encVar+" protects only a key generated with it. "+
				"To replace it, move to SIGNING_KEY_FILE, or stop every replica, delete the row of signing_keys and start them "+
				"(every headset logs in again; see docs/security.md, \"Keys\")", zap.String("encryption_key_id", seal.ID()))
		}
		keys, err = token.ParsePEM(plain)
		if err != nil {
			return nil, fmt.Errorf("stored signing key: %w", err)
		}
	}
	return token.New(keys, token.Options{Issuer: issuer, Now: a.now})
}

// hasher is the password hasher. A server (workers true) hashes in worker
// processes, this same binary run as "proxy hash-worker"; a command that
// hashes once does it in its own process.
func (a *app) hasher(workers bool) (*password.Hasher, error) {
	opts := password.Options{Tracer: a.tracer("password")}
	if workers {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find this program to start hash workers: %w", err)
		}
		opts.Worker = func() *exec.Cmd {
			cmd := exec.Command(exe, hashWorkerCommand)
			// One processor each: a worker runs one hash at a time.
			cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
			return cmd
		}
	}
	return password.New(opts)
}

func (a *app) identity(h *password.Hasher) *identity.Service {
	return identity.New(a.store, h, identity.Lockout{
		MaxFailures: a.cfg.LoginMaxFailures, Duration: a.cfg.LoginLockout, MaxDuration: maxLockout,
		OnLock: a.metrics.Lockout,
	}, a.now, a.log)
}

func (a *app) sessions(s *token.Signer) *session.Manager {
	return session.NewManager(a.store, s, session.Config{
		TTL: a.cfg.TokenTTL, MaxAge: a.cfg.SessionMaxAge, RefreshGrace: a.cfg.RefreshGrace, IdleTimeout: a.cfg.IdleTimeout,
		Cache: a.cache, Metrics: a.metrics, Tracer: a.tracer("session"),
	}, a.now, a.log)
}

// tracer is the tracer of one of the proxy's packages, nil while tracing
// is off (the package then records no spans, at no cost).
func (a *app) tracer(pkg string) trace.Tracer {
	if a.tracing == nil {
		return nil
	}
	return a.tracing.Tracer("github.com/authsidecar/authsidecar/proxy/internal/" + pkg)
}

// asSettingError turns the tracing package's SettingError into the one
// main reports with exit 2.
func asSettingError(err error) error {
	var te *tracing.SettingError
	if errors.As(err, &te) {
		return &settingError{Var: te.Var, Err: te.Err}
	}
	return err
}

// flushTraces sends the spans not yet exported, within a few seconds.
func flushTraces(stop func(context.Context) error, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		log.Warn("tracing: spans not sent at exit", zap.Error(err))
	}
}
