package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// NewTransport returns the transport used to reach the upstream: one shared
// pool with enough idle connections that steady traffic reuses them instead
// of opening (and leaving in TIME_WAIT) a connection per request.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy: nil, // the upstream is next to us; never route it via HTTP_PROXY
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     false,
		// Pass Accept-Encoding through untouched: the client decides, and
		// the proxy never decompresses a body only to send it on.
		DisableCompression: true,
	}
}

// callerKey carries the decision from the forwarding handler to Rewrite,
// in the request's context: a client cannot put it there.
type callerKey struct{}

// caller is what Rewrite forwards a request as: a live session, or
// nobody (named false: a public route without one).
type caller struct {
	session auth.Session
	named   bool
	body    *clientBody // nil for a request without a body
}

// forwarder returns the one handler that sends authenticated requests to
// upstream, plain or upgrading alike. It forwards only a request whose
// context carries the caller (see forward).
func (g *Gateway) forwarder(upstream *url.URL, transport http.RoundTripper) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			c, ok := pr.In.Context().Value(callerKey{}).(caller)
			if !ok {
				// Unreachable: only forward calls the forwarder. Should it
				// ever happen, abort rather than forward a request nobody
				// checked (the server recovers ErrAbortHandler and drops the
				// connection).
				panic(http.ErrAbortHandler)
			}
			pr.SetURL(upstream)
			rewriteOutbound(pr, c.session, c.named)
		},
		Transport:    transport,
		ErrorHandler: g.upstreamError,
		// What ReverseProxy logs itself is an upstream's body cut short: a
		// warning. (A client that hangs up cancels the read, which it does
		// not log.)
		ErrorLog: stdLogAt(g.log.Named("forward"), zap.WarnLevel),
		// Without a pool every response allocates a fresh 32 KiB copy
		// buffer.
		BufferPool: bufferPool{},
	}
}

// forward sends r to the upstream as the caller s, or as nobody when
// named is false.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, s auth.Session, named bool) {
	setOutcome(w, outcomeForwarded)
	if _, upgrade := r.Header["Upgrade"]; upgrade && named {
		// A tunnel outlives this check: it is kept under its session, to be
		// closed when the session ends.
		w = &tunnelWriter{ResponseWriter: w, tunnels: &g.tunnels, session: s}
	}
	var body *clientBody
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		body = &clientBody{ReadCloser: r.Body}
		r.Body = body
	}
	g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, caller{s, named, body})))
}

// bufferPool lends ReverseProxy its copy buffers from a sync.Pool.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }

// clientBody is a forwarded request's body. The transport reads it while it
// sends the request, and when the client breaks it (a malformed chunk, a
// body cut short, a client gone mid-upload) fails as if the upstream had,
// or, when the client's connection ended with it, as a canceled request.
// clientBody remembers the break, so that upstreamError answers for what it
// is.
type clientBody struct {
	io.ReadCloser
	broken atomic.Bool
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.broken.Store(true)
		err = clientFault{err}
	}
	return n, err
}

// clientFault is a broken body's error as the transport returns it: the
// metrics transport does not count it against the upstream.
type clientFault struct{ error }

func (e clientFault) Unwrap() error     { return e.error }
func (e clientFault) ClientFault() bool { return true }

// errBadBody is the answer to a request whose body could not be read.
var errBadBody = auth.InvalidInputf("the request body is malformed or was cut short")

// upstreamError answers when the upstream cannot be reached: 504 when it
// took too long, 502 otherwise. A request whose own body broke on the way
// is the client's fault: 400, logged like any refused request.
func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	// The transport has stopped reading the body by now: it waits for its
	// writer before it returns an error.
	if c, _ := r.Context().Value(callerKey{}).(caller); c.body != nil && c.body.broken.Load() {
		g.writeError(w, r, fmt.Errorf("%w: %w", errBadBody, err))
		return
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		setAbandoned(w) // the client went away
		return
	}
	status, code := http.StatusBadGateway, "bad_gateway"
	var nerr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
		status, code = http.StatusGatewayTimeout, "gateway_timeout"
	}
	// The caller rides in the context (see forward): an operator finds the
	// device and session that met the failure.
	c, _ := r.Context().Value(callerKey{}).(caller)
	g.log.Warn("upstream failed", zap.String("method", r.Method), zap.String("path", r.URL.Path),
		zap.String("device_id", c.session.DeviceID), zap.String("session_id", c.session.ID),
		zap.Int("status", status), zap.Error(err))
	setOutcome(w, code)
	writeJSON(w, status, errorBody{Error: code, Message: "the upstream service could not be reached"})
}

// stdLogAt is a standard library logger that writes to log at level.
func stdLogAt(log *zap.Logger, level zapcore.Level) *stdlog.Logger {
	l, err := zap.NewStdLogAt(log, level)
	if err != nil {
		return zap.NewStdLog(log) // only for a level zap does not know
	}
	return l
}
