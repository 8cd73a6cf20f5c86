package gateway

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// ParseTrustedProxies parses TRUSTED_PROXIES: comma-separated CIDRs (or
// single addresses) of the load balancers and ingresses in front of the
// proxy, whose X-Forwarded-For the proxy believes.
func ParseTrustedProxies(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		if !strings.Contains(item, "/") {
			a, err := netip.ParseAddr(item)
			if err != nil {
				return nil, err
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// clientAddr is the address a request came from, for the logs and the
// audit trail: the TCP peer's, or, when the peer is a trusted proxy, the
// right-most address of X-Forwarded-For that is not a trusted proxy. The
// entries left of that one were written by whoever the first untrusted
// hop was — the client itself — and prove nothing.
func (g *Gateway) clientAddr(r *http.Request) string {
	peer := r.RemoteAddr
	if host, _, err := net.SplitHostPort(peer); err == nil {
		peer = host
	}
	if len(g.cfg.TrustedProxies) == 0 || !g.trusted(peer) {
		return peer
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for _, h := range strings.Split(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		if !g.trusted(hops[i]) {
			return truncateAddr(hops[i])
		}
	}
	if len(hops) > 0 {
		return truncateAddr(hops[0])
	}
	return peer
}

func (g *Gateway) trusted(addr string) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range g.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// truncateAddr bounds what a header can put in a log line or a row.
func truncateAddr(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

// acting returns the request's context with who acts (by; empty for the
// user the domain knows) and from where, for the audit trail and the logs.
func (g *Gateway) acting(r *http.Request, by string) context.Context {
	return auth.WithActor(r.Context(), auth.Actor{By: by, ClientAddr: g.clientAddr(r)})
}
