package tracing

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
)

func TestOffUnlessAnExporterIsAskedFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want Settings
	}{
		{map[string]string{}, Settings{Protocol: "http/protobuf", Propagators: []string{"tracecontext", "baggage"}}},
		// A sampler or a service name alone exports nothing.
		{map[string]string{"OTEL_TRACES_SAMPLER": "always_on", "OTEL_SERVICE_NAME": "x"},
			Settings{Protocol: "http/protobuf", Propagators: []string{"tracecontext", "baggage"}}},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
			Settings{Enabled: true, Exporters: []string{"otlp"}, Protocol: "http/protobuf", Propagators: []string{"tracecontext", "baggage"}}},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			Settings{Enabled: true, Exporters: []string{"otlp"}, Protocol: "grpc", Propagators: []string{"tracecontext", "baggage"}}},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_TRACES_EXPORTER": "otlp,console"},
			Settings{Enabled: true, Exporters: []string{"otlp", "console"}, Protocol: "http/protobuf", Propagators: []string{"tracecontext", "baggage"}}},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"},
			Settings{Protocol: "http/protobuf", Propagators: []string{"tracecontext", "baggage"}}},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"},
			Settings{Exporters: []string{"otlp"}, Protocol: "http/protobuf", Propagators: []string{"tracecontext", "baggage"}}},
		{map[string]string{"OTEL_TRACES_EXPORTER": "console", "OTEL_PROPAGATORS": "tracecontext"},
			Settings{Enabled: true, Exporters: []string{"console"}, Protocol: "http/protobuf", Propagators: []string{"tracecontext"}}},
	} {
		got, err := Parse(tc.env)
		if err != nil {
			t.Errorf("%v: %v", tc.env, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v:\n got %+v\nwant %+v", tc.env, got, tc.want)
		}
	}
}

// TestMalformedSettingsAreNamed: what the SDK would skip with a message,
// this refuses, naming the variable.
func TestMalformedSettingsAreNamed(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "none.pem")
	for _, tc := range []struct{ name, value string }{
		{"OTEL_SDK_DISABLED", "maybe"},
		{"OTEL_TRACES_EXPORTER", "zipkin"},
		{"OTEL_TRACES_EXPORTER", "otlp,jaeger"},
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"},
		{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "udp"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector"},
		{"OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"},
		{"OTEL_EXPORTER_OTLP_INSECURE", "yes please"},
		{"OTEL_EXPORTER_OTLP_HEADERS", "api-key"},
		{"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a=%zz"},
		{"OTEL_EXPORTER_OTLP_CERTIFICATE", missing},
		{"OTEL_EXPORTER_OTLP_TIMEOUT", "10s"},
		{"OTEL_BSP_SCHEDULE_DELAY", "-1"},
		{"OTEL_BSP_MAX_QUEUE_SIZE", "many"},
		{"OTEL_TRACES_SAMPLER", "sometimes"},
		{"OTEL_PROPAGATORS", "b3"},
		{"OTEL_RESOURCE_ATTRIBUTES", "team"},
	} {
		_, err := Parse(map[string]string{tc.name: tc.value})
		var se *SettingError
		if !errors.As(err, &se) || se.Var != tc.name {
			t.Errorf("%s=%q: %v, want a SettingError naming it", tc.name, tc.value, err)
		}
	}
	for _, ratio := range []string{"1%", "-0.1", "1.5"} {
		_, err := Parse(map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio})
		var se *SettingError
		if !errors.As(err, &se) || se.Var != "OTEL_TRACES_SAMPLER_ARG" {
			t.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: %v, want a SettingError naming it", ratio, err)
		}
	}
	// The SDK reads the sampler in any case; the ratio only for a ratio.
	if _, err := Parse(map[string]string{"OTEL_TRACES_SAMPLER": "ParentBased_TraceIDRatio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}); err != nil {
		t.Error(err)
	}
	if _, err := Parse(map[string]string{"OTEL_TRACES_SAMPLER": "always_on", "OTEL_TRACES_SAMPLER_ARG": "junk"}); err != nil {
		t.Error(err)
	}
}

// TestOffWrapsNothing: with tracing off the handler is the very one given.
func TestOffWrapsNothing(t *testing.T) {
	t.Parallel()
	tp, stop, err := Setup(context.Background(), Settings{}, Options{Log: zap.NewNop()})
	if err != nil || tp != nil {
		t.Fatalf("Setup off: %v, %v", tp, err)
	}
	if err := stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := http.NotFoundHandler()
	if got := Handler(h, tp, Probe); reflect.ValueOf(got).Pointer() != reflect.ValueOf(h).Pointer() {
		t.Fatal("Handler wrapped the handler with tracing off")
	}
}

// TestConsoleExporter: on, the provider's spans reach the exporter when
// the shutdown flushes them. (OTLP is tested end to end in e2e.)
func TestConsoleExporter(t *testing.T) {
	t.Parallel()
	out := &lockedBuffer{}
	tp, stop, err := Setup(context.Background(), Settings{Enabled: true, Exporters: []string{"console"}, Propagators: []string{"tracecontext"}},
		Options{Service: "test", Version: "v0", Console: out, Log: zap.NewNop()})
	if err != nil || tp == nil {
		t.Fatalf("Setup: %v, %v", tp, err)
	}
	srv := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), tp, Probe))
	defer srv.Close()
	for _, path := range []string{"/traced", "/healthz"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if err := stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !strings.Contains(got, `"Name": "GET"`) && !strings.Contains(got, `"Name":"GET"`) {
		t.Fatalf("no server span exported:\n%s", got)
	}
	if strings.Contains(got, "/healthz") {
		t.Fatalf("a probe was traced:\n%s", got)
	}
	if !strings.Contains(got, `"Value": "test"`) && !strings.Contains(got, `"Value":"test"`) {
		t.Fatalf("service.name not on the spans:\n%s", got)
	}
}

// lockedBuffer is written by the exporter's goroutine and read here.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
