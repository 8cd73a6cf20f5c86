package e2e

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// span is one received span with the service that sent it.
type span struct {
	Service, Name         string
	Kind                  tracepb.Span_SpanKind
	TraceID, ID, ParentID string
}

// otlpReceiver is an OTLP/HTTP trace receiver: POST /v1/traces with a
// protobuf ExportTraceServiceRequest, as a collector takes it.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []span
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
			http.NotFound(w, req)
			return
		}
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		var export collectorpb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(b, &export)
		}
		if err != nil {
			t.Errorf("OTLP export: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range export.GetResourceSpans() {
			service := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					r.spans = append(r.spans, span{Service: service, Name: s.GetName(), Kind: s.GetKind(),
						TraceID: hex.EncodeToString(s.GetTraceId()), ID: hex.EncodeToString(s.GetSpanId()),
						ParentID: hex.EncodeToString(s.GetParentSpanId())})
				}
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.Close)
	return r
}

// trace returns the spans received so far of trace id.
func (r *otlpReceiver) trace(id string) []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []span
	for _, s := range r.spans {
		if s.TraceID == id {
			out = append(out, s)
		}
	}
	return out
}

// tracingEnv are the settings that send a program's spans to r, at once.
func (r *otlpReceiver) tracingEnv() map[string]string {
	return map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": r.URL,
		"OTEL_TRACES_SAMPLER":         "always_on",
		"OTEL_BSP_SCHEDULE_DELAY":     "50",
	}
}

// newTraceparent returns a caller's W3C traceparent (sampled) and its trace
// and span ids.
func newTraceparent(t *testing.T) (header, traceID, spanID string) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	traceID, spanID = hex.EncodeToString(b[:16]), hex.EncodeToString(b[16:])
	return "00-" + traceID + "-" + spanID + "-01", traceID, spanID
}

// sendWith makes one request with extra headers and returns its status and
// body.
func sendWith(t *testing.T, method, u string, hdr http.Header, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = hdr
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestOneTraceSpansProxyAndBackend: a caller's traceparent is continued
// by the proxy, whose spans show the checks a request went through, and
// sent on to the storage backend, whose server span is the child of the
// proxy's call: one trace across both programs.
func TestOneTraceSpansProxyAndBackend(t *testing.T) {
	t.Parallel()
	otlp := newOTLPReceiver(t)
	db := databaseURL(t)
	backendEnv := otlp.tracingEnv()
	backendEnv["DATABASE_URL"] = db
	s := &stack{t: t, DB: db}
	s.Backend = start(t, backendBin, backendEnv)
	s.proxyEnv = otlp.tracingEnv()
	for k, v := range map[string]string{"DATABASE_URL": db, "UPSTREAM_URL": s.Backend.URL(), "METRICS_ADDR": ""} {
		s.proxyEnv[k] = v
	}
	s.Proxy = s.StartProxy()
	s.AddUser(device, "1111", "1111", false)

	// Logged in on another replica, so that the traced request below meets
	// its token and session for the first time (a replica caches what it
	// creates).
	other := s.StartProxy()
	loginTP, loginTrace, loginParent := newTraceparent(t)
	status, body := sendWith(t, "POST", other.URL()+"/api/auth/login", http.Header{"Traceparent": {loginTP}},
		map[string]string{"deviceId": device, "username": "1111", "password": "1111"})
	var lb loginBody
	if err := json.Unmarshal(body, &lb); status != http.StatusOK || err != nil {
		t.Fatalf("login: %d %s", status, body)
	}
	tp, traceID, callerSpan := newTraceparent(t)
	status, body = sendWith(t, "POST", s.Proxy.URL()+"/api/storage",
		http.Header{"Traceparent": {tp}, "Authorization": {"Bearer " + lb.Token}},
		map[string]any{"key": "traced", "data": 1})
	if status != http.StatusCreated {
		t.Fatalf("store: %d %s", status, body)
	}

	// The spans arrive in batches: wait for the last one expected.
	var spans []span
	deadline := time.Now().Add(30 * time.Second)
	for {
		spans = otlp.trace(traceID)
		if find(spans, "storage-backend", tracepb.Span_SPAN_KIND_SERVER, "") != nil &&
			find(spans, "proxy", tracepb.Span_SPAN_KIND_CLIENT, "") != nil &&
			find(spans, "proxy", tracepb.Span_SPAN_KIND_SERVER, "") != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s, the trace has %s", describe(spans))
		}
		time.Sleep(50 * time.Millisecond)
	}
	server := find(spans, "proxy", tracepb.Span_SPAN_KIND_SERVER, "")
	if server.ParentID != callerSpan {
		t.Errorf("the proxy's server span's parent is %s, want the caller's span %s", server.ParentID, callerSpan)
	}
	auth := find(spans, "proxy", tracepb.Span_SPAN_KIND_INTERNAL, "session.authenticate")
	if auth == nil || auth.ParentID != server.ID {
		t.Fatalf("no authentication span under the server span: %s", describe(spans))
	}
	// A token and a session met for the first time: the signature is
	// checked and the session looked up in the database.
	if v := find(spans, "proxy", tracepb.Span_SPAN_KIND_INTERNAL, "token.verify"); v == nil || v.ParentID != auth.ID {
		t.Errorf("no token.verify span under session.authenticate: %s", describe(spans))
	}
	if l := find(spans, "proxy", tracepb.Span_SPAN_KIND_CLIENT, "session.lookup"); l == nil || l.ParentID != auth.ID {
		t.Errorf("no session.lookup span under session.authenticate: %s", describe(spans))
	}
	client := findUpstreamCall(spans)
	if client == nil || !descends(spans, client, server) {
		t.Fatalf("no upstream client span under the server span: %s", describe(spans))
	}
	backend := find(spans, "storage-backend", tracepb.Span_SPAN_KIND_SERVER, "")
	if backend.ParentID != client.ID {
		t.Errorf("the storage backend's server span's parent is %s, want the proxy's client span %s", backend.ParentID, client.ID)
	}

	// The login's trace holds the password check, under its server span.
	deadline = time.Now().Add(30 * time.Second)
	for find(otlp.trace(loginTrace), "proxy", tracepb.Span_SPAN_KIND_INTERNAL, "password.verify") == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no password.verify span in the login's trace: %s", describe(otlp.trace(loginTrace)))
		}
		time.Sleep(50 * time.Millisecond)
	}
	login := otlp.trace(loginTrace)
	ls := find(login, "proxy", tracepb.Span_SPAN_KIND_SERVER, "")
	if pv := find(login, "proxy", tracepb.Span_SPAN_KIND_INTERNAL, "password.verify"); ls == nil || ls.ParentID != loginParent || !descends(login, pv, ls) {
		t.Errorf("the login's spans do not nest: %s", describe(login))
	}
}

// TestTraceparentPassesThroughWithTracingOff: without OTEL_* settings the
// proxy takes no part in a trace; the caller's trace context reaches the
// upstream exactly as sent.
func TestTraceparentPassesThroughWithTracingOff(t *testing.T) {
	t.Parallel()
	got := make(chan http.Header, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.Header.Clone():
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(up.Close)
	s := newEmbeddedStack(t, map[string]string{"UPSTREAM_URL": up.URL})
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	tp, _, _ := newTraceparent(t)
	const state = "vendor=opaque"
	status, body := sendWith(t, "GET", s.Proxy.URL()+"/api/anything",
		http.Header{"Traceparent": {tp}, "Tracestate": {state}, "Authorization": {"Bearer " + lb.Token}}, nil)
	if status != http.StatusNoContent {
		t.Fatalf("forwarded: %d %s", status, body)
	}
	h := <-got
	if h.Get("Traceparent") != tp || h.Get("Tracestate") != state {
		t.Fatalf("upstream got traceparent %q tracestate %q, want %q %q", h.Get("Traceparent"), h.Get("Tracestate"), tp, state)
	}
	if strings.Contains(s.Proxy.Logs(), "tracing on") {
		t.Fatal("tracing on without an OTEL_* setting")
	}
}

// TestBadTracingSettingStopsTheProgram: a malformed OTEL_* value is a bad
// setting like any other: exit 2, one line naming it.
func TestBadTracingSettingStopsTheProgram(t *testing.T) {
	t.Parallel()
	for _, bin := range []string{proxyBin, backendBin} {
		cmd := exec.Command(bin)
		cmd.Env = env(map[string]string{"DATA_DIR": t.TempDir(), "OTEL_TRACES_SAMPLER": "sometimes"})
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		_ = cmd.Run()
		var entry struct{ Level, Msg, Setting string }
		if code := cmd.ProcessState.ExitCode(); code != 2 || strings.Count(stderr.String(), "\n") != 1 ||
			json.Unmarshal(stderr.Bytes(), &entry) != nil || entry.Setting != "OTEL_TRACES_SAMPLER" || !strings.Contains(entry.Msg, "OTEL_TRACES_SAMPLER") {
			t.Errorf("%s: exit %d, stderr %q; want 2 and one line naming OTEL_TRACES_SAMPLER", bin, code, stderr.String())
		}
	}
}

// find returns the first span of service of kind (and name, unless
// empty).
func find(spans []span, service string, kind tracepb.Span_SpanKind, name string) *span {
	for i, s := range spans {
		if s.Service == service && s.Kind == kind && (name == "" || s.Name == name) {
			return &spans[i]
		}
	}
	return nil
}

// findUpstreamCall returns the proxy's client span of the forwarded
// request (the session lookup is a client span too).
func findUpstreamCall(spans []span) *span {
	for i, s := range spans {
		if s.Service == "proxy" && s.Kind == tracepb.Span_SPAN_KIND_CLIENT && s.Name != "session.lookup" {
			return &spans[i]
		}
	}
	return nil
}

// descends reports whether s is below ancestor in spans.
func descends(spans []span, s, ancestor *span) bool {
	if s == nil || ancestor == nil {
		return false
	}
	byID := map[string]span{}
	for _, x := range spans {
		byID[x.ID] = x
	}
	for id := s.ParentID; id != ""; id = byID[id].ParentID {
		if id == ancestor.ID {
			return true
		}
		if _, ok := byID[id]; !ok {
			return false
		}
	}
	return false
}

func describe(spans []span) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d spans:", len(spans))
	for _, s := range spans {
		fmt.Fprintf(&b, "\n  %s %s %q id %s parent %s", s.Service, s.Kind, s.Name, s.ID, s.ParentID)
	}
	return b.String()
}
