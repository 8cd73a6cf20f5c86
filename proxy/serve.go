package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/proxy/internal/audit"
	"github.com/authsidecar/authsidecar/proxy/internal/cleanup"
	"github.com/authsidecar/authsidecar/proxy/internal/devicegrant"
	"github.com/authsidecar/authsidecar/proxy/internal/gateway"
	"github.com/authsidecar/authsidecar/proxy/internal/heapfloor"
	"github.com/authsidecar/authsidecar/proxy/internal/login"
	"github.com/authsidecar/authsidecar/proxy/internal/metrics"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
	"github.com/authsidecar/authsidecar/proxy/internal/tracing"
)

// drainTimeout bounds how long in-flight requests may take to finish after
// SIGTERM: below Kubernetes' default 30 s grace period, so the pod exits on
// its own rather than being killed.
const drainTimeout = 20 * time.Second

// cacheEntries bounds the token and the session cache (each). At well under
// 1 KiB an entry, the two stay below a few hundred MiB even when full.
const cacheEntries = 1 << 18

// liveSessionsEvery is how often each replica counts the live sessions for
// its gauge: a scrape never counts (see metrics.LiveSessions).
const liveSessionsEvery = time.Minute

// limits bound what one client connection may cost the proxy.
type limits struct {
	// ReadHeader closes a connection whose request headers do not arrive
	// in time: a slowloris client holds a goroutine and a socket, not more.
	ReadHeader time.Duration
	Read       time.Duration // the whole request, body included
	Write      time.Duration // the whole response
	Idle       time.Duration // a keep-alive connection between requests
	// MaxHeaderBytes answers larger request headers with 431.
	MaxHeaderBytes int
}

var defaultLimits = limits{
	ReadHeader:     10 * time.Second,
	Read:           60 * time.Second,
	Write:          120 * time.Second,
	Idle:           120 * time.Second,
	MaxHeaderBytes: 64 << 10,
}

func newServer(h http.Handler, l limits, log *zap.Logger) *http.Server {
	return &http.Server{
		Handler:           limitHeaders(h, l.MaxHeaderBytes),
		ReadHeaderTimeout: l.ReadHeader,
		ReadTimeout:       l.Read,
		WriteTimeout:      l.Write,
		IdleTimeout:       l.Idle,
		// The server's own cut, past which net/http answers 431 in plain
		// text before any handler runs, is kept well above the limit, so
		// that limitHeaders answers nearly every oversized request in JSON
		// like every other error.
		MaxHeaderBytes: headerCutFactor * l.MaxHeaderBytes,
		ErrorLog:       zap.NewStdLog(log.Named("http")),
	}
}

// headerCutFactor is how far above limits.MaxHeaderBytes the server itself
// stops reading headers.
const headerCutFactor = 4

// limitHeaders answers a request whose request line and headers exceed max
// bytes with 431 and a JSON error body.
func limitHeaders(h http.Handler, max int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + len(r.Host)
		for k, vs := range r.Header {
			for _, v := range vs {
				n += len(k) + len(v) + 4 // ": " and CRLF
			}
		}
		if n > max {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusRequestHeaderFieldsTooLarge)
			fmt.Fprintf(w, `{"error":"headers_too_large","message":"the request line and headers are over %d bytes"}`+"\n", max)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// warnIfKeyFileOpen warns when the signing key file can be written by its
// group or read by anyone else (a Kubernetes Secret mounted 0440 is fine).
func warnIfKeyFileOpen(path string, log *zap.Logger) {
	if path == "" {
		return
	}
	fi, err := os.Stat(path)
	if err == nil && fi.Mode().Perm()&0o027 != 0 {
		log.Warn("SIGNING_KEY_FILE is readable or writable by others; restrict it (chmod 600)",
			zap.String("path", path), zap.String("mode", fi.Mode().Perm().String()))
	}
}

func serve(ctx context.Context, cfg config, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return usagef("serve takes no arguments")
	}
	log := newLogger(cfg.logLevel, stderr).With(zap.String("service", "proxy"))
	warnIfKeyFileOpen(cfg.SigningKeyFile, log)
	tp, stopTracing, err := tracing.Setup(ctx, cfg.tracing, tracing.Options{Service: "proxy", Version: version, Console: stdout, Log: log})
	if err != nil {
		return asSettingError(err)
	}
	defer flushTraces(stopTracing, log) // last: after the drain, the spans of the drained requests
	// Serving only: the operator commands run for a moment and never
	// collect often.
	defer heapfloor.Start(uint64(cfg.GCHeapFloorMiB) << 20).Stop() // Stop of no floor does nothing
	m := metrics.New()
	a, err := openApp(ctx, cfg, log, m, time.Minute)
	if err != nil {
		return err
	}
	defer a.close()
	a.tracing = tp

	// Background work (listener, janitor) stops after the server has
	// drained, before the pool closes.
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var background sync.WaitGroup
	defer func() { stopBackground(); background.Wait() }()
	goBackground := func(f func(context.Context)) {
		background.Add(1)
		go func() { defer background.Done(); f(bg) }()
	}
	attempts := newOutageSafeAttempts(boundSessionChecks(a.store, cfg.SessionCheckTimeout), log.Named("lockout"))
	a.store = attempts
	goBackground(attempts.Run)

	// The gateway closes the tunnels of sessions that end; the listener,
	// started once the gateway exists, tells it of every change.
	var gw *gateway.Gateway
	var grants *devicegrant.Service
	var listener *postgres.Listener
	switch {
	case cfg.SessionCache && a.embedded != nil:
		// The embedded store sends no change notifications, and operator
		// commands change it from other processes: sessions are looked up
		// on every request (a local read), verified tokens are cached.
		a.cache = session.NewCache(cacheEntries)
	case cfg.SessionCache:
		a.cache = session.NewCache(cacheEntries)
		listener = &postgres.Listener{
			URL:  cfg.listenURL(),
			Pool: a.pool,
			Ping: cfg.ListenerHealthInterval,
			Changed: func(id string) {
				if req, ok := strings.CutPrefix(id, devicegrant.NotifyPrefix); ok {
					grants.Wake(req) // a device request decided, perhaps on another replica
					return
				}
				m.Notification()
				a.cache.Evict(id)
				gw.SessionChanged(id)
			},
			State: func(up bool) {
				a.cache.SetListening(up)
				m.ListenerUp(up)
			},
			Log: log.Named("listener"),
		}
	default:
		log.Warn("SESSION_CACHE is off: every request is checked in the database")
	}
	goBackground(func(ctx context.Context) {
		m.LiveSessions(ctx, liveSessionsEvery, func(ctx context.Context) (int64, error) {
			return a.store.CountLiveSessions(ctx, a.now())
		}, log.Named("metrics"))
	})
	if a.pool != nil {
		m.DBPool(a.pool.Stat)
	}

	signer, err := a.signer(ctx)
	if err != nil {
		return err
	}
	hasher, err := a.hasher(true)
	if err != nil {
		return err
	}
	defer hasher.Close()
	m.HashSlots(hasher.Slots(), hasher.Busy, hasher.Queued)
	sessions, ids := a.sessions(signer), a.identity(hasher)
	logins := login.New(ids, sessions, m, log)
	logins.OneUserPerDevice = cfg.OneUserPerDevice
	goBackground(sessions.FlushIdle)
	grants = devicegrant.New(a.store, logins, sessions, devicegrant.Config{}, a.now, log.Named("devicegrant"))
	gw = gateway.New(gateway.Config{
		Upstream:       cfg.upstream,
		Sessions:       sessions,
		Login:          logins,
		Device:         grants,
		JWKS:           signer.JWKS(),
		Ready:          a.ready,
		Rules:          cfg.rules,
		Audit:          audit.New(a.store, cfg.AuditRetention, a.now),
		TrustedProxies: cfg.trusted,
		Metrics:        m,
		Tracing:        tp,
		Log:            log,
	})
	if listener != nil {
		goBackground(listener.Run)
	}
	goBackground(gw.SweepTunnels)

	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on LISTEN_ADDR %s: %w", cfg.ListenAddr, err)
	}
	srv := newServer(tracing.Handler(gw, tp, tracing.Probe), defaultLimits, log)
	errc := make(chan error, 2)
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen on METRICS_ADDR %s: %w", cfg.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.Handler())
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		defer msrv.Close()
		go func() {
			if err := msrv.Serve(mln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics server: %w", err)
			}
		}()
		log.Info("metrics listening", zap.String("metrics_addr", mln.Addr().String()))
	}
	log.Info("proxy listening", zap.String("addr", ln.Addr().String()), zap.String("upstream", cfg.upstream.Redacted()),
		zap.String("version", version))

	janitor := &cleanup.Janitor{
		Every: cfg.CleanupInterval,
		Lock: func(ctx context.Context) (func(), bool, error) {
			return a.store.TryExclusive(ctx, "janitor")
		},
		Tasks: []cleanup.Task{
			{Name: "expired sessions", Run: sessions.Cleanup},
			{Name: "stale login failures", Run: ids.ForgetStaleFailures},
			{Name: "old audit events", Run: audit.New(a.store, cfg.AuditRetention, a.now).Prune},
			{Name: "expired device codes", Run: grants.Cleanup},
		},
		Log: log.Named("cleanup"),
	}
	goBackground(janitor.Run)

	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	// Draining: readiness fails at once so that no new traffic is routed
	// here; for DRAIN_DELAY new requests are still served (load balancers
	// take a moment to notice); then in-flight requests finish and the pool
	// closes (deferred).
	gw.Drain()
	log.Info("draining", zap.Duration("drain_delay", cfg.DrainDelay), zap.Duration("drain_timeout", drainTimeout))
	time.Sleep(cfg.DrainDelay)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("drain: %w", err)
	}
	log.Info("stopped")
	return nil
}
