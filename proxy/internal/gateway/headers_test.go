package gateway

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// TestHeaderPolicy holds one case per rule of headers.go: what a client
// sends, and what of it the upstream gets once Rewrite has run.
func TestHeaderPolicy(t *testing.T) {
	t.Parallel()
	caller := auth.Session{ID: "s1", UserID: "u1", Username: "ann", DeviceID: "VR-1", IsAdmin: false}
	identity := map[string]string{HeaderUserID: "u1", HeaderUsername: "ann", HeaderDeviceID: "VR-1", HeaderSessionID: "s1", HeaderAdmin: "false"}
	for _, c := range []struct {
		rule string
		sent http.Header
		want map[string]string // "" for absent
	}{
		{"identity headers are ours, whatever the client sent under their names",
			http.Header{HeaderUserID: {"admin"}, HeaderAdmin: {"true"}, "X-Auth-Username": {"root", "x"}},
			identity},
		{"identity spelled with underscores or in another case is removed",
			http.Header{"X_auth_user_id": {"u2"}, "X-AUTH-ADMIN": {"true"}, "X-Auth-Role": {"admin"}},
			map[string]string{"X_auth_user_id": "", "X-AUTH-ADMIN": "", "X-Auth-Role": "", HeaderAdmin: "false"}},
		{"the token never reaches the backend",
			http.Header{"Authorization": {"Bearer abc"}},
			map[string]string{"Authorization": ""}},
		{"forwarding claims are the proxy's own, not appended to the client's",
			http.Header{"X-Forwarded-For": {"10.0.0.1"}, "X_forwarded_for": {"10.0.0.2"}, "Forwarded": {"for=10.0.0.3"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"evil"}},
			map[string]string{"X-Forwarded-For": "192.0.2.1", "X_forwarded_for": "", "Forwarded": "", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "example.com"}},
		{"client-address headers of CDNs and balancers are removed",
			http.Header{"X-Real-Ip": {"1.1.1.1"}, "True-Client-Ip": {"1.1.1.1"}, "X-Client-Ip": {"1.1.1.1"}, "Client-Ip": {"1.1.1.1"},
				"Cf-Connecting-Ip": {"1.1.1.1"}, "X-Cluster-Client-Ip": {"1.1.1.1"}, "X-Original-Url": {"/admin"}, "X-Rewrite-Url": {"/admin"}, "X_real_ip": {"1"}},
			map[string]string{"X-Real-Ip": "", "True-Client-Ip": "", "X-Client-Ip": "", "Client-Ip": "", "Cf-Connecting-Ip": "",
				"X-Cluster-Client-Ip": "", "X-Original-Url": "", "X-Rewrite-Url": "", "X_real_ip": ""}},
		{"h2c is never offered to the backend, in any position of the list",
			http.Header{"Upgrade": {"websocket, H2C/1"}, "Connection": {"Upgrade"}, "Http2-Settings": {"AAA"}},
			map[string]string{"Upgrade": "", "Connection": "", "Http2-Settings": ""}},
		{"a WebSocket upgrade goes through",
			http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}},
			map[string]string{"Upgrade": "websocket"}},
		{"everything else passes unchanged",
			http.Header{"Accept": {"application/json"}, "X-Request-Id": {"r1"}, "Cookie": {"a=b"}},
			map[string]string{"Accept": "application/json", "X-Request-Id": "r1", "Cookie": "a=b"}},
	} {
		t.Run(c.rule, func(t *testing.T) {
			in := httptest.NewRequest("GET", "http://example.com/api/x", nil)
			in.RemoteAddr = "192.0.2.1:1234"
			in.Header = c.sent.Clone()
			out := in.Clone(in.Context())
			out.Trailer = http.Header{HeaderUserID: {"forged"}}
			pr := &httputil.ProxyRequest{In: in, Out: out}
			pr.SetURL(&url.URL{Scheme: "http", Host: "upstream"})
			rewriteOutbound(pr, caller, true)
			for k, v := range identity {
				if got := pr.Out.Header[k]; len(got) != 1 || got[0] != v {
					t.Errorf("identity %s = %q, want %q", k, got, v)
				}
			}
			for k, v := range c.want {
				got, ok := pr.Out.Header[k]
				switch {
				case v == "" && ok:
					t.Errorf("%s reached the upstream: %q", k, got)
				case v != "" && (len(got) != 1 || got[0] != v):
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if pr.Out.Trailer != nil {
				t.Errorf("request trailers are forwarded: %v", pr.Out.Trailer)
			}
		})
	}
}

func TestIsClientClaim(t *testing.T) {
	t.Parallel()
	for k, want := range map[string]bool{
		"X-Auth-User-Id": true, "x_AUTH_anything": true, "X-Forwarded-Port": true, "Forwarded": true, "FORWARDED": true,
		"X-Real-Ip": true, "Cf_Connecting_Ip": true, "X-Original-URL": true,
		"X-Authorization": false, "Forwarded-For": false, "X-Realip": false, "Accept": false, "X-Auth": false,
	} {
		if got := isClientClaim(k); got != want {
			t.Errorf("isClientClaim(%q) = %v, want %v", k, got, want)
		}
	}
}
