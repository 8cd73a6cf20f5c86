package gateway

import (
	"net/http"
	"testing"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// TestIdentityCannotBeForged: Rewrite copies identity headers only from a
// request that authenticated marked; a client that sends the same headers
// itself, in the canonical spelling, does not pass for one.
func TestIdentityCannotBeForged(t *testing.T) {
	t.Parallel()
	forged := http.Header{}
	for _, k := range []string{HeaderUserID, HeaderUsername, HeaderDeviceID, HeaderSessionID} {
		forged.Set(k, "x")
	}
	for _, admin := range []string{"true", "false"} {
		forged.Set(HeaderAdmin, admin)
		out := http.Header{}
		if copyIdentity(out, forged) {
			t.Fatalf("a client's own X-Auth-Admin: %s passed for the proxy's", admin)
		}
		if len(out) != 0 {
			t.Fatalf("copied %v from a forged request", out)
		}
	}

	for _, admin := range []bool{true, false} {
		in := forged.Clone()
		setIdentity(in, auth.Session{ID: "s1", UserID: "u1", Username: "ann", DeviceID: "VR-1", IsAdmin: admin})
		out := http.Header{}
		if !copyIdentity(out, in) {
			t.Fatal("the identity authenticated set was not copied")
		}
		want := map[string]string{HeaderUserID: "u1", HeaderUsername: "ann", HeaderDeviceID: "VR-1", HeaderSessionID: "s1", HeaderAdmin: "false"}
		if admin {
			want[HeaderAdmin] = "true"
		}
		for k, v := range want {
			if got := out.Values(k); len(got) != 1 || got[0] != v {
				t.Errorf("%s: %q, want %q", k, got, v)
			}
		}
	}
}

// TestIdentityHeadersSurviveAppends: the admin values are shared slices; a
// later Add on a forwarded request must not change them for everyone.
func TestIdentityHeadersSurviveAppends(t *testing.T) {
	t.Parallel()
	in := http.Header{}
	setIdentity(in, auth.Session{ID: "s", UserID: "u", Username: "n", DeviceID: "d", IsAdmin: true})
	out := http.Header{}
	copyIdentity(out, in)
	out.Add(HeaderAdmin, "false")
	if len(adminTrue) != 1 || adminTrue[0] != "true" || len(adminFalse) != 1 || adminFalse[0] != "false" {
		t.Fatalf("shared values changed: %q %q", adminTrue, adminFalse)
	}
}
