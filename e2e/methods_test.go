package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// Every route the proxy serves itself answers any other method with 405,
// an Allow header naming the method it serves and the JSON error body, as
// docs/openapi.yaml says (MethodNotAllowed), and forwards nothing. The
// routes are read from the gateway's source, so a new one is covered too.
func TestProxyRoutesRefuseOtherMethods(t *testing.T) {
	t.Parallel()
	up := newRecordingUpstream(t)
	s := newProxyStack(t, up.URL, nil)
	routes := proxyRoutes(t)
	methods := map[string]int{}
	for r := range routes {
		_, path, _ := strings.Cut(r, " ")
		methods[path]++
	}
	for _, r := range sortedKeys(routes) {
		method, path, _ := strings.Cut(r, " ")
		if methods[path] > 1 {
			continue // served for every method (forward-auth asks with the client's)
		}
		path = strings.ReplaceAll(path, "{id}", "some-session")
		wrong := http.MethodPut
		if method == http.MethodPut {
			wrong = http.MethodPost
		}
		resp := do(t, wrong, s.Proxy.URL()+path, "", nil)
		if resp.Status != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != method {
			t.Errorf("%s %s: %d, Allow %q; want 405, Allow %q: %s", wrong, path, resp.Status, resp.Header.Get("Allow"), method, resp.Body)
			continue
		}
		wantError(t, resp, http.StatusMethodNotAllowed, "method_not_allowed")
	}
	if n := up.hits.Load(); n != 0 {
		t.Fatalf("%d requests with a wrong method reached the upstream", n)
	}
}
