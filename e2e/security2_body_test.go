package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// TestSecurity2ChunkedBodyBrokenByTheClient: through the real proxy, a
// forwarded request whose chunked body is malformed is 400 invalid_request,
// and the proxy does not log it as the upstream's failure. The same request
// with a well-formed body reaches the upstream, so the 400 is the body's.
func TestSecurity2ChunkedBodyBrokenByTheClient(t *testing.T) {
	t.Parallel()
	up := newRecordingUpstream(t)
	s := newProxyStack(t, up.URL, nil)
	s.AddUser(device, "1111", "1111", false)
	tok := login(t, s.Proxy, device, "1111", "1111").Token
	head := "POST /api/storage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok +
		"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"

	if r := raw(t, s.Proxy.Addr, head+"2\r\n{}\r\n0\r\n\r\n"); r.Status != http.StatusOK || up.hits.Load() != 1 {
		t.Fatalf("a well-formed chunked body: %d %s", r.Status, r.Body)
	}
	for _, body := range []string{"zz\r\n{}\r\n0\r\n\r\n", "2\r\n{}\r\nnot-a-size\r\n", "1\r\n{}\r\n0\r\n\r\n"} {
		wantError(t, raw(t, s.Proxy.Addr, head+body), http.StatusBadRequest, "invalid_request")
	}
	for _, line := range strings.Split(s.Proxy.Logs(), "\n") {
		if strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) {
			t.Errorf("logged as more than a refused request: %s", line)
		}
	}
}
