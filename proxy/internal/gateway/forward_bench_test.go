package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	"github.com/authsidecar/authsidecar/proxy/internal/gateway"
	"github.com/authsidecar/authsidecar/proxy/internal/metrics"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
)

// BenchmarkForward compares a proxied request through the gateway (token
// and session served from the cache) with the same request through a bare
// httputil.ReverseProxy, for profiling the gateway's own cost:
//
//	go test -run '^$' -bench Forward -cpuprofile cpu.out ./proxy/internal/gateway
func BenchmarkForward(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer up.Close()
	upURL, _ := url.Parse(up.URL)

	b.Run("bare", func(b *testing.B) {
		rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(upURL); pr.SetXForwarded() },
			Transport: gateway.NewTransport(), BufferPool: pool{}}
		srv := httptest.NewServer(rp)
		defer srv.Close()
		drive(b, srv.URL, "")
	})
	b.Run("gateway", func(b *testing.B) {
		e := newEnvWith(b, envOptions{Upstream: upURL, Session: func(cfg *session.Config) {
			cfg.Cache = session.NewCache(1000)
			cfg.Metrics = metrics.New()
		}})
		e.cache.SetListening(true) // no listener here: nothing changes meanwhile
		e.addUser("VR-1", "1111", "1111", false)
		tok := e.login("VR-1", "1111", "1111")
		drive(b, e.srv.URL, tok)
	})
}

func drive(b *testing.B, base, tok string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("GET", base+"/api/anything", nil)
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

type pool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (pool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (pool) Put(b []byte) { buffers.Put(&b) }
