package gateway

import (
	"net/http"
	"net/http/httputil"
	"strings"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// This file is the proxy's one header policy: what a forwarded request
// carries to the upstream, and what the forward-auth answer carries back
// to an ingress. Every rule says which attack it answers; the table test
// beside it (headers_test.go) holds one case per rule.
//
// httputil.ReverseProxy has already done its part when Rewrite runs: the
// hop-by-hop headers, and any header the client listed in Connection, are
// gone (so a client cannot name our identity headers in Connection to have
// them dropped after we set them), Forwarded and X-Forwarded-{For,Host,Proto}
// are deleted, and unparsable query parameters are removed.

// The identity headers the proxy sets on every forwarded request. Whatever
// the client sent under these names (in any spelling) is removed first.
const (
	HeaderUserID    = "X-Auth-User-Id"
	HeaderUsername  = "X-Auth-Username"
	HeaderDeviceID  = "X-Auth-Device-Id"
	HeaderAdmin     = "X-Auth-Admin"
	HeaderSessionID = "X-Auth-Session-Id"
)

// clientAddressHeaders name the client's address, or the URL it asked for,
// in the spellings of CDNs and load balancers. A backend (or a framework's
// "real IP" middleware) that reads one of them would trust what the client
// wrote about itself: the proxy is the only hop that may say who connected.
var clientAddressHeaders = [...]string{
	"x-real-ip", "true-client-ip", "x-client-ip", "client-ip", "cf-connecting-ip",
	"x-cluster-client-ip", "x-original-url", "x-rewrite-url",
}

// rewriteOutbound applies the policy to a request on its way to the
// upstream as the caller s (or as nobody, on a public route, when named is
// false: then no identity header reaches the upstream at all).
func rewriteOutbound(pr *httputil.ProxyRequest, s auth.Session, named bool) {
	h := pr.Out.Header
	// Every claim the client made about who it is or where it connected
	// from goes, in every spelling; what the proxy sets below is then the
	// only such claim the upstream sees.
	stripClientClaims(h)
	// The backend stays plain: it never sees the token.
	h.Del("Authorization")
	// Request trailers arrive after the body, where no check above looked:
	// forwarded, they would carry X-Auth-* or Authorization past it.
	pr.Out.Trailer = nil
	// h2c would let the client talk HTTP/2 straight to the backend on a
	// connection the proxy no longer inspects (h2c smuggling).
	if requestsH2C(h) {
		h.Del("Upgrade")
		h.Del("Connection")
		h.Del("Http2-Settings")
	}
	// X-Forwarded-For is the TCP peer; X-Forwarded-Host the Host the client
	// asked for (the client's word, as Host itself is); X-Forwarded-Proto
	// how it connected to the proxy.
	pr.SetXForwarded()
	if named {
		setIdentity(h, s)
	}
}

// setIdentity writes the caller's identity headers on h: a forwarded
// request's, or the forward-auth answer's for the ingress to copy.
func setIdentity(h http.Header, s auth.Session) {
	admin := "false"
	if s.IsAdmin {
		admin = "true"
	}
	// One allocation for the five values (this runs on every request);
	// each slice is capped, so that an Add on one cannot write into the
	// next.
	v := &[5]string{s.UserID, s.Username, s.DeviceID, s.ID, admin}
	h[HeaderUserID], h[HeaderUsername], h[HeaderDeviceID] = v[0:1:1], v[1:2:2], v[2:3:3]
	h[HeaderSessionID], h[HeaderAdmin] = v[3:4:4], v[4:5:5]
}

// stripClientClaims removes every header that a backend could read as one
// the proxy vouches for: our identity headers (X-Auth-*), and who the client
// is or how it connected (X-Forwarded-*, Forwarded, clientAddressHeaders).
// Any case, and with underscores for dashes: some servers, CGI and WSGI
// among them, fold X_Auth_User_Id into the same variable as X-Auth-User-Id,
// so a client could otherwise set our header under a name we did not look
// for.
func stripClientClaims(h http.Header) {
	for k := range h {
		if isClientClaim(k) {
			delete(h, k)
		}
	}
}

// isClientClaim reports whether a client's header named k claims something
// only the proxy may say (see stripClientClaims).
func isClientClaim(k string) bool {
	if hasPrefixFold(k, "x-auth-") || hasPrefixFold(k, "x-forwarded-") || equalFold(k, "forwarded") {
		return true
	}
	for _, name := range clientAddressHeaders {
		if equalFold(k, name) {
			return true
		}
	}
	return false
}

// equalFold reports whether name is want (lower case, with dashes) in any
// case and with '_' for '-'.
func equalFold(name, want string) bool {
	return len(name) == len(want) && hasPrefixFold(name, want)
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
