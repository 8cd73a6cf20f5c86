package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The bench re-executes itself with one of these subcommands to run the
// upstream and the bare reverse proxy as processes of their own: in the
// bench's process they would share its scheduler and garbage collector
// with the load generator, and the comparison with the real proxy (a
// process of its own) would be unfair.

// serveUpstream is the trivial backend: every request gets 201 and a small
// JSON body, so that what is measured is the proxies, not the backend.
func serveUpstream(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("upstream takes no arguments")
	}
	body := []byte(`{"ok":true}` + "\n")
	length := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", length)
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(body)
	})
	return serveAnnounced(h)
}

// serveBareProxy is the baseline: a tuned httputil.ReverseProxy that does
// what authsidecar does to forward a request (Rewrite with SetURL and
// SetXForwarded, a pooled transport that leaves compression alone) and
// nothing else. Its server has the same timeouts as authsidecar's, so that
// the only difference between the two is authentication.
func serveBareProxy(args []string) error {
	fs := flag.NewFlagSet("bareproxy", flag.ContinueOnError)
	upstream := fs.String("upstream", "", "URL of the upstream")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*upstream)
	if err != nil || u.Host == "" {
		return fmt.Errorf("bareproxy: -upstream %q is not a URL", *upstream)
	}
	transport := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		DisableCompression:    true,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
		},
		Transport: transport,
		// Tuned as the proxy is: copy buffers are reused, not allocated
		// per response.
		BufferPool: newBufferPool(),
	}
	return serveAnnounced(rp)
}

// serveOTLPSink is a trivial OpenTelemetry collector for the tracing arm:
// it takes OTLP/HTTP trace exports (POST /v1/traces), reads them whole and
// answers success (an empty ExportTraceServiceResponse is an empty body),
// so that the proxy's exporter does its whole work and nothing more.
func serveOTLPSink(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("otlpsink takes no arguments")
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})
	return serveAnnounced(h)
}

// serveAnnounced serves h on a free loopback port, writes
// {"addr":"host:port"} as the first line of stdout for the bench to read,
// and stops on SIGTERM or SIGINT.
func serveAnnounced(h http.Handler) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	line, err := json.Marshal(map[string]string{"addr": ln.Addr().String()})
	if err != nil {
		return err
	}
	fmt.Println(string(line))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// bufferPool reuses ReverseProxy's 32 KiB copy buffers.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *b.p.Get().(*[]byte) }
func (b *bufferPool) Put(s []byte) { b.p.Put(&s) }
