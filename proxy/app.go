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
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authsidecar/authsidecar/proxy/internal/identity"
	"github.com/authsidecar/authsidecar/proxy/internal/metrics"
	"github.com/authsidecar/authsidecar/proxy/internal/password"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
	"github.com/authsidecar/authsidecar/proxy/internal/schema"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
	"github.com/authsidecar/authsidecar/proxy/internal/sqlite"
	"github.com/authsidecar/authsidecar/proxy/internal/store"
	"github.com/authsidecar/authsidecar/proxy/internal/token"
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
	metrics  *metrics.Metrics // nil for operator commands
	cache    *session.Cache   // nil unless serving with SESSION_CACHE
}

func newLogger(level zapcore.Level, w io.Writer) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "time"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
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

// signer loads the signing keys: from SIGNING_KEY_FILE when set, else the
// generated key kept in the database (made on first start).
func (a *app) signer(ctx context.Context) (*token.Signer, error) {
	keys := a.cfg.signingKeys
	if keys == nil {
		pem, err := a.store.SigningKeyPEM(ctx, func() (string, []byte, error) {
			k, err := token.GenerateKey()
			if err != nil {
				return "", nil, err
			}
			p, err := k.MarshalPEM()
			return k.ID, p, err
		})
		if err != nil {
			return nil, err
		}
		keys, err = token.ParsePEM(pem)
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
	opts := password.Options{}
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
		TTL: a.cfg.TokenTTL, MaxAge: a.cfg.SessionMaxAge, RefreshGrace: a.cfg.RefreshGrace,
		Cache: a.cache, Metrics: a.metrics,
	}, a.now, a.log)
}
