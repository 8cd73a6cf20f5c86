package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// The identity headers the proxy sets on every forwarded request. Whatever
// the client sent under these names (in any spelling) is removed first.
const (
	HeaderUserID    = "X-Auth-User-Id"
	HeaderUsername  = "X-Auth-Username"
	HeaderDeviceID  = "X-Auth-Device-Id"
	HeaderAdmin     = "X-Auth-Admin"
	HeaderSessionID = "X-Auth-Session-Id"
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

func (g *Gateway) newReverseProxy(upstream *url.URL, transport http.RoundTripper) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// Rewrite runs after hop-by-hop headers (and any header the
			// client listed in Connection) are gone, so nothing the client
			// sends can remove the identity headers set here.
			pr.SetURL(upstream)
			h := pr.Out.Header
			// What the client claims about itself or about the hops before
			// us goes first, in every spelling; then the X-Forwarded-* set
			// here are fresh, not appended to the client's claim.
			stripClientClaims(h)
			// The backend stays plain: it never sees the token. (Deleted
			// before SetXForwarded adds its three, whose room it makes.)
			h.Del("Authorization")
			pr.SetXForwarded()
			// h2c would let the client talk HTTP/2 straight to the backend
			// on a connection the proxy no longer inspects (h2c smuggling).
			if requestsH2C(h) {
				h.Del("Upgrade")
				h.Del("Connection")
				h.Del("Http2-Settings")
			}
			if !copyIdentity(h, pr.In.Header) {
				// Unreachable: the forwarder only runs behind authenticated.
				// Should it ever happen, abort rather than forward a request
				// nobody checked (the server recovers ErrAbortHandler and
				// drops the connection).
				panic(http.ErrAbortHandler)
			}
		},
		Transport:    transport,
		ErrorHandler: g.upstreamError,
		// Without a pool every response allocates a fresh 32 KiB copy
		// buffer, and the garbage collector's work then costs more than
		// authenticating the request.
		BufferPool: bufferPool{},
	}
}

// bufferPool lends ReverseProxy its copy buffers from a sync.Pool.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }

// The identity travels from authenticated to Rewrite in the incoming
// request's headers, set there under the canonical names over whatever the
// client sent under them: passing it in the request's context instead
// would copy the request and allocate a context on every request. The
// client cannot forge it: Rewrite copies only the values of a request
// whose X-Auth-Admin is one of the two slices below, which nothing but
// setIdentity can put there.
var (
	adminTrue  = []string{"true"}
	adminFalse = []string{"false"}
)

// setIdentity sets the caller's identity headers on h: the incoming
// request's headers on the way to the ReverseProxy's Rewrite, or the
// plain forwarder's outbound headers.
func setIdentity(h http.Header, s auth.Session) {
	v := &[4]string{s.UserID, s.Username, s.DeviceID, s.ID} // one allocation for the four
	h[HeaderUserID], h[HeaderUsername], h[HeaderDeviceID], h[HeaderSessionID] = v[0:1:1], v[1:2:2], v[2:3:3], v[3:4:4]
	h[HeaderAdmin] = adminFalse
	if s.IsAdmin {
		h[HeaderAdmin] = adminTrue
	}
}

// copyIdentity copies the identity headers that setIdentity set on in to
// out, and reports false (copying nothing) if in has none.
func copyIdentity(out, in http.Header) bool {
	admin := in[HeaderAdmin]
	if len(admin) != 1 || (&admin[0] != &adminTrue[0] && &admin[0] != &adminFalse[0]) {
		return false
	}
	for _, k := range [...]string{HeaderUserID, HeaderUsername, HeaderDeviceID, HeaderSessionID, HeaderAdmin} {
		out[k] = in[k]
	}
	return true
}

// stripClientClaims removes every header that a backend could read as one
// the proxy vouches for: our identity headers (X-Auth-*), and who the client
// is or how it connected (X-Forwarded-*, Forwarded, X-Real-Ip). Any case,
// and with underscores for dashes: some servers, CGI and WSGI among them,
// fold X_Auth_User_Id into the same variable as X-Auth-User-Id, so a client
// could otherwise set our header under a name we did not look for.
//
// The proxy's own identity headers, in their canonical spelling, stay: the
// request's copy of the incoming headers has them from setIdentity, and
// copyIdentity overwrites them right after. Keeping them, rather than
// deleting and adding them again, spares the header map a reallocation.
func stripClientClaims(h http.Header) {
	for k := range h {
		switch k {
		case HeaderUserID, HeaderUsername, HeaderDeviceID, HeaderAdmin, HeaderSessionID:
			continue
		}
		if isClientClaim(k) {
			delete(h, k)
		}
	}
}

// isClientClaim reports whether a client's header named k claims something
// only the proxy may say (see stripClientClaims).
func isClientClaim(k string) bool {
	return hasPrefixFold(k, "x-auth-") || hasPrefixFold(k, "x-forwarded-") ||
		(len(k) == len("forwarded") && hasPrefixFold(k, "forwarded")) ||
		(len(k) == len("x-real-ip") && hasPrefixFold(k, "x-real-ip"))
}

// hasPrefixFold reports whether name starts with prefix (lower case, with
// dashes) in any case and with '_' for '-'. It runs for every header of
// every request, so it does not allocate.
func hasPrefixFold(name, prefix string) bool {
	if len(name) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := name[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// requestsH2C reports whether any Upgrade header offers h2c, in any case and
// in any position of a list ("websocket, h2c"): comparing only the whole
// first value would let "Upgrade: foo, h2c" through.
func requestsH2C(h http.Header) bool {
	for _, v := range h.Values("Upgrade") {
		for _, proto := range strings.Split(v, ",") {
			// A protocol may carry a version ("h2c/1"); the name decides.
			name, _, _ := strings.Cut(strings.TrimSpace(proto), "/")
			if strings.EqualFold(name, "h2c") {
				return true
			}
		}
	}
	return false
}

// upstreamError answers when the upstream cannot be reached: 504 when it
// took too long, 502 otherwise.
func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away
	}
	status, code := http.StatusBadGateway, "bad_gateway"
	var nerr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
		status, code = http.StatusGatewayTimeout, "gateway_timeout"
	}
	g.log.Warn("upstream failed", zap.String("method", r.Method), zap.String("path", r.URL.Path),
		zap.Int("status", status), zap.Error(err))
	writeJSON(w, status, errorBody{Error: code, Message: "the upstream service could not be reached"})
}
