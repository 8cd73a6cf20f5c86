package gateway

import (
	"net/http/httptest"
	"testing"
)

func TestClientAddr(t *testing.T) {
	t.Parallel()
	trusted, err := ParseTrustedProxies("10.0.0.0/8, 192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{cfg: Config{TrustedProxies: trusted}}
	for _, c := range []struct {
		peer string
		xff  []string
		want string
	}{
		{"198.51.100.7:4000", []string{"203.0.113.1"}, "198.51.100.7"},               // an untrusted peer's claim is ignored
		{"10.1.2.3:4000", []string{"203.0.113.1"}, "203.0.113.1"},                    // a trusted balancer names the client
		{"10.1.2.3:4000", []string{"6.6.6.6, 203.0.113.1, 10.9.9.9"}, "203.0.113.1"}, // the right-most untrusted hop
		{"10.1.2.3:4000", []string{"6.6.6.6", "203.0.113.1"}, "203.0.113.1"},         // several headers are one list
		{"192.0.2.1:4000", nil, "192.0.2.1"},                                         // a trusted peer without a claim
		{"10.1.2.3:4000", []string{"10.0.0.5"}, "10.0.0.5"},                          // all trusted: the left-most
		{"[::ffff:10.1.2.3]:4000", []string{"203.0.113.1"}, "203.0.113.1"},           // IPv4 in IPv6
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := g.clientAddr(r); got != c.want {
			t.Errorf("peer %s, X-Forwarded-For %q: %q, want %q", c.peer, c.xff, got, c.want)
		}
	}
	// Without trusted proxies, the peer it is, whatever the headers say.
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr, r.Header["X-Forwarded-For"] = "10.1.2.3:1", []string{"203.0.113.1"}
	if got := (&Gateway{}).clientAddr(r); got != "10.1.2.3" {
		t.Errorf("no trusted proxies: %q", got)
	}
	if _, err := ParseTrustedProxies("10.0.0.0/33"); err == nil {
		t.Error("a bad CIDR parsed")
	}
}
