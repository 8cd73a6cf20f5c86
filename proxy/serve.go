package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/proxy/internal/cleanup"
	"github.com/authsidecar/authsidecar/proxy/internal/gateway"
)

// drainTimeout bounds how long in-flight requests may take to finish after
// SIGTERM: below Kubernetes' default 30 s grace period, so the pod exits on
// its own rather than being killed.
const drainTimeout = 20 * time.Second

func serve(ctx context.Context, cfg config, args []string, _ io.Reader, _, stderr io.Writer) error {
	if len(args) > 0 {
		return usagef("serve takes no arguments")
	}
	log := newLogger(cfg.logLevel, stderr).With(zap.String("service", "proxy"))
	a, err := openApp(ctx, cfg, log, time.Minute)
	if err != nil {
		return err
	}
	defer a.close()

	signer, err := a.signer(ctx)
	if err != nil {
		return err
	}
	hasher, err := a.hasher()
	if err != nil {
		return err
	}
	sessions, ids := a.sessions(signer), a.identity(hasher)
	gw := gateway.New(gateway.Config{
		Upstream: cfg.upstream,
		Sessions: sessions,
		Identity: ids,
		JWKS:     signer.JWKS(),
		Ready:    a.ready,
		Log:      log,
	})

	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on LISTEN_ADDR %s: %w", cfg.ListenAddr, err)
	}
	srv := &http.Server{
		Handler:           gw,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
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
		},
		Log: log.Named("cleanup"),
	}
	janitorCtx, stopJanitor := context.WithCancel(context.WithoutCancel(ctx))
	janitorDone := make(chan struct{})
	go func() { defer close(janitorDone); janitor.Run(janitorCtx) }()
	defer func() { stopJanitor(); <-janitorDone }()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	// Draining: readiness fails at once so that no new traffic is routed
	// here; in-flight requests finish; then the pool closes (deferred).
	gw.Drain()
	log.Info("draining", zap.Duration("deadline", drainTimeout))
	shutdownCtx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("drain: %w", err)
	}
	log.Info("stopped")
	return nil
}
