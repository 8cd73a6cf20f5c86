package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
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
			// Inbound X-Forwarded-* were dropped before Rewrite: these are
			// fresh, not appended to what the client claimed.
			pr.SetXForwarded()
			h := pr.Out.Header
			stripIdentityHeaders(h)
			// The backend stays plain: it never sees the token.
			h.Del("Authorization")
			// h2c would let the client talk HTTP/2 straight to the backend
			// on a connection the proxy no longer inspects.
			if strings.EqualFold(strings.TrimSpace(h.Get("Upgrade")), "h2c") {
				h.Del("Upgrade")
				h.Del("Connection")
				h.Del("Http2-Settings")
			}
			c, ok := callerFrom(pr.In.Context())
			if !ok {
				// Unreachable: the forwarder only runs behind authenticated.
				// Should it ever happen, the backend sees no identity at all.
				return
			}
			s := c.Session
			h[HeaderUserID] = []string{s.UserID}
			h[HeaderUsername] = []string{s.Username}
			h[HeaderDeviceID] = []string{s.DeviceID}
			h[HeaderAdmin] = []string{strconv.FormatBool(s.IsAdmin)}
			h[HeaderSessionID] = []string{s.ID}
		},
		Transport:    transport,
		ErrorHandler: g.upstreamError,
	}
}

// stripIdentityHeaders removes every header that a backend could read as one
// of ours: any case, and with underscores for dashes (some servers, CGI and
// WSGI among them, fold X_Auth_User_Id into the same variable as
// X-Auth-User-Id).
func stripIdentityHeaders(h http.Header) {
	for k := range h {
		if len(k) >= 7 && strings.EqualFold(strings.ReplaceAll(k[:7], "_", "-"), "x-auth-") {
			delete(h, k)
		}
	}
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
