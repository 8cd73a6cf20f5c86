package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// TestDirectForwardingAgreesWithTheRouter: every request that skips the
// router would have been handed to the forwarding catch-all by the router
// itself, without a redirect, over every path built from the segments that
// matter (the proxy's own route names, dot segments, escapes, empty ones).
func TestDirectForwardingAgreesWithTheRouter(t *testing.T) {
	t.Parallel()
	g := New(Config{Upstream: &url.URL{Scheme: "http", Host: "127.0.0.1:9"}})
	segments := []string{"", ".", "..", "api", "auth", "admin", "sessions", "healthz", "readyz",
		".well-known", "jwks.json", "%61uth", "%2e%2e", "a%2Fb", "storage", "x;y", "login"}
	var paths []string
	var build func(prefix string, depth int)
	build = func(prefix string, depth int) {
		paths = append(paths, prefix, prefix+"/")
		if depth == 0 {
			return
		}
		for _, s := range segments {
			build(prefix+"/"+s, depth-1)
		}
	}
	build("", 3)

	direct := 0
	for _, p := range paths {
		if p == "" {
			continue
		}
		for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
			r := httptest.NewRequest(method, "http://proxy"+p, nil)
			if !forwardsDirectly(r) {
				continue
			}
			direct++
			h, pattern := g.mux.Handler(r)
			if pattern != "/" || fmt.Sprintf("%T", h) == "*http.redirectHandler" {
				t.Errorf("%s %s skips the router, which would have chosen %q (%T)", method, p, pattern, h)
			}
		}
	}
	if direct == 0 {
		t.Fatal("no path was forwarded directly")
	}
}

func TestForwardsDirectly(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		method, target string
		want           bool
	}{
		{"POST", "/api/storage", true},
		{"GET", "/api/storage/test-123?x=1", true},
		{"GET", "/", true},
		{"GET", "/anything/", true},
		{"GET", "/api/authentic", false}, // shares a prefix with /api/auth: the router decides
		{"POST", "/api/auth/login", false},
		{"GET", "/api/admin/sessions", false},
		{"GET", "/healthz", false},
		{"GET", "/readyz", false},
		{"GET", "/.well-known/jwks.json", false},
		{"GET", "/api/%61uth/login", false},
		{"GET", "/api%2Fstorage", false},
		{"GET", "//api/storage", false},
		{"GET", "/api/./storage", false},
		{"GET", "/x/../api/auth/login", false},
		{"GET", "/api/storage/..", false},
		{"GET", "/api/storage/.", false},
		{"GET", "/a//b", false},
		{"OPTIONS", "*", false},
	} {
		r := httptest.NewRequest(c.method, c.target, nil)
		if got := forwardsDirectly(r); got != c.want {
			t.Errorf("%s %s: forwardsDirectly = %v, want %v", c.method, c.target, got, c.want)
		}
	}
	r := httptest.NewRequest("CONNECT", "/api/storage", nil)
	r.Method = http.MethodConnect
	if forwardsDirectly(r) {
		t.Error("CONNECT forwarded directly")
	}
}
