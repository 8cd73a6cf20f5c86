package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// proxyRouteSpellings are ways to write a path under /api/auth/ or
// /api/admin/ that a router, a path cleaner or a backend might read as one
// of the proxy's own routes, or as a path beside them: another case, an
// encoded or a back slash, a ';' parameter, a trailing dot, dot segments,
// doubled slashes, percent-encoded letters. logout, refresh and the admin's
// revoke are left out: served, they would end or replace the sessions the
// test relies on (the check at the end would notice).
var proxyRouteSpellings = []string{
	// As they are: served by the proxy.
	"/api/auth/session",
	"/api/admin/sessions",
	"/api/auth/verify",
	"/api/auth/no-such-route",
	"/api/admin/no-such-route",
	"/api/admin/sessions/no-such-session",
	"/api/auth",
	"/api/admin",
	// Case.
	"/API/AUTH/session",
	"/Api/Auth/Session",
	"/api/AUTH/session",
	"/api/auth/SESSION",
	"/API/ADMIN/SESSIONS",
	"/api/Admin/sessions",
	// Encoded slash and backslash, and a raw backslash.
	"/api/auth%2fsession",
	"/api/auth%2Fsession",
	"/api%2fauth/session",
	"/api%2Fadmin%2Fsessions",
	"/api/admin%2fsessions",
	"/api/auth%5csession",
	"/api/admin%5Csessions",
	`/api\auth\session`,
	`/api/admin\sessions`,
	// ';' parameters.
	"/api/auth;x/session",
	"/api/auth/session;x",
	"/api;/auth/session",
	"/api/admin;/sessions",
	"/api/admin/sessions;jsessionid=1",
	"/api/auth/session;",
	// Trailing dots.
	"/api/auth./session",
	"/api./auth/session",
	"/api/auth/session.",
	"/api/admin./sessions",
	"/api/admin/sessions.",
	// Dot segments, encoded or not, and doubled slashes.
	"/api/auth/./session",
	"/api/auth/../auth/session",
	"/api/x/../auth/session",
	"/api/storage/../auth/session",
	"/api/storage/../admin/sessions",
	"/api/auth/%2e/session",
	"/api/auth/%2e%2e/admin/sessions",
	"/api/storage/%2e%2e/admin/sessions",
	"/api/storage/.%2e/admin/sessions",
	"/api/storage/%2E%2E/auth/session",
	"/./api/auth/session",
	"//api/auth/session",
	"/api//auth/session",
	"/api/auth//session",
	"/api/admin//sessions",
	"/api/admin/sessions/",
	// Letters percent-encoded.
	"/%61pi/auth/session",
	"/api/%61uth/session",
	"/api/auth/%73ession",
	"/api/%61dmin/sessions",
	"/%41PI/ADMIN/sessions",
}

// TestSecurity2PathSpellingsOfProxyRoutesAreNeverForwarded sends every
// spelling, as raw bytes, with a valid token of a user and of an admin,
// to the real proxy in front of a recording upstream: each is refused or
// answered by the proxy itself, none is forwarded. The same tokens are
// forwarded on an ordinary path before and after, so it is the path that
// keeps each request from the upstream, not the token.
func TestSecurity2PathSpellingsOfProxyRoutesAreNeverForwarded(t *testing.T) {
	t.Parallel()
	up := newRecordingUpstream(t)
	s := newProxyStack(t, up.URL, nil)
	s.AddUser(device, "1111", "1111", false)
	s.AddUser(device, "admin", "9999", true)
	tokens := map[string]string{
		"user":  login(t, s.Proxy, device, "1111", "1111").Token,
		"admin": login(t, s.Proxy, device, "admin", "9999").Token,
	}
	addr := s.Proxy.Addr
	request := func(method, target, tok string) response {
		return raw(t, addr, method+" "+target+" HTTP/1.1\r\nHost: "+addr+"\r\nAuthorization: Bearer "+tok+
			"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	}
	forwarded := func(when string) {
		t.Helper()
		before := up.hits.Load()
		for who, tok := range tokens {
			if r := request("GET", "/api/storage/k", tok); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"upstream":true`) {
				t.Fatalf("%s, the %s's token on an ordinary path: %d %s", when, who, r.Status, r.Body)
			}
		}
		if n := up.hits.Load() - before; n != int64(len(tokens)) {
			t.Fatalf("%s: %d of %d ordinary requests reached the upstream", when, n, len(tokens))
		}
	}

	forwarded("before")
	before := up.hits.Load()
	for _, target := range proxyRouteSpellings {
		for _, method := range []string{"GET", "POST", "DELETE"} {
			for who, tok := range tokens {
				r := request(method, target, tok)
				if r.Status >= 500 || strings.Contains(string(r.Body), `"upstream":true`) {
					t.Errorf("%s %s as %s: %d %s", method, target, who, r.Status, r.Body)
				}
				if n := up.hits.Load(); n != before {
					t.Fatalf("%s %s as %s reached the upstream (%d %s)", method, target, who, r.Status, r.Body)
				}
			}
		}
	}
	forwarded("after")
}
