// Package tracing sets up OpenTelemetry tracing from OpenTelemetry's own
// environment variables (OTEL_*), and wraps the HTTP handler in a server
// span per request when it is on, continuing the trace of the proxy's
// call (its traceparent header), so that one trace spans both programs.
//
// Off is the default and costs nothing: with no exporter asked for, Setup
// returns no tracer provider and Handler returns the handler it is given.
//
// The proxy has a copy of this package of its own (with a transport for
// its upstream calls): the two programs share no code.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/go-logr/logr/funcr"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// Settings are what this program decides from the OTEL_* variables. The
// SDK reads the rest of them itself (endpoint, headers, sampler, batching,
// resource attributes), from the same environment.
type Settings struct {
	// Enabled: an exporter is asked for, by OTEL_TRACES_EXPORTER or an
	// OTLP endpoint, and OTEL_SDK_DISABLED is not true.
	Enabled     bool
	Exporters   []string // otlp, console
	Protocol    string   // of otlp: grpc or http/protobuf
	Propagators []string // tracecontext, baggage
}

// SettingError names the OTEL_* variable that is wrong.
type SettingError struct {
	Var string
	Err error
}

func (e *SettingError) Error() string { return fmt.Sprintf("invalid setting %s: %v", e.Var, e.Err) }
func (e *SettingError) Unwrap() error { return e.Err }

// Parse checks the OTEL_* variables of environ that this program or the
// SDK reads, and decides whether tracing is on. The SDK would skip a
// malformed value with a message on stderr and go on without it (a sampler
// it cannot read samples everything); here it stops the program instead,
// naming the variable, like any other setting.
func Parse(environ map[string]string) (Settings, error) {
	bad := func(name, format string, args ...any) (Settings, error) {
		return Settings{}, &SettingError{Var: name, Err: fmt.Errorf(format, args...)}
	}
	get := func(name string) string { return strings.TrimSpace(environ[name]) }

	disabled := false
	if v := get("OTEL_SDK_DISABLED"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return bad("OTEL_SDK_DISABLED", "%q is not true or false", v)
		}
		disabled = b
	}
	s := Settings{Propagators: []string{"tracecontext", "baggage"}}
	exporterSet := false
	if v := get("OTEL_TRACES_EXPORTER"); v != "" {
		exporterSet = true
		for _, e := range splitList(v) {
			switch e {
			case "otlp", "console":
				s.Exporters = append(s.Exporters, e)
			case "none":
			default:
				return bad("OTEL_TRACES_EXPORTER", "%q is not one of otlp, console, none", e)
			}
		}
	}
	s.Protocol = "http/protobuf" // the specification's default
	for _, name := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
		switch v := get(name); v {
		case "":
		case "grpc", "http/protobuf":
			s.Protocol = v // the traces' own variable, read second, wins
		default:
			return bad(name, "%q is not grpc or http/protobuf (http/json is not supported)", v)
		}
	}
	endpoint := false
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		v := get(name)
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad(name, "%q is not an http:// or https:// URL", v)
		}
		endpoint = true
	}
	if !exporterSet && endpoint {
		s.Exporters = []string{"otlp"}
	}
	for _, prefix := range []string{"OTEL_EXPORTER_OTLP_", "OTEL_EXPORTER_OTLP_TRACES_"} {
		if v := get(prefix + "COMPRESSION"); v != "" && v != "gzip" && v != "none" {
			return bad(prefix+"COMPRESSION", "%q is not gzip or none", v)
		}
		if v := get(prefix + "INSECURE"); v != "" {
			if _, err := strconv.ParseBool(v); err != nil {
				return bad(prefix+"INSECURE", "%q is not true or false", v)
			}
		}
		if v := get(prefix + "HEADERS"); v != "" {
			if err := checkHeaders(v); err != nil {
				return bad(prefix+"HEADERS", "%v", err)
			}
		}
		for _, file := range []string{"CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY"} {
			if v := get(prefix + file); v != "" {
				if _, err := os.ReadFile(v); err != nil {
					var pe *os.PathError
					if errors.As(err, &pe) {
						err = pe.Err
					}
					return bad(prefix+file, "cannot read %s: %v", v, err)
				}
			}
		}
	}
	for _, name := range []string{
		"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
		"OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_EXPORT_TIMEOUT", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
		"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT",
		"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_SPAN_EVENT_COUNT_LIMIT",
		"OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "OTEL_SPAN_LINK_COUNT_LIMIT", "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
	} {
		if v := get(name); v != "" {
			if n, err := strconv.Atoi(v); err != nil || n < 0 {
				return bad(name, "%q is not a whole number of 0 or more (milliseconds for a time)", v)
			}
		}
	}
	switch v := strings.ToLower(get("OTEL_TRACES_SAMPLER")); v {
	case "", "always_on", "always_off", "parentbased_always_on", "parentbased_always_off":
	case "traceidratio", "parentbased_traceidratio":
		if arg := get("OTEL_TRACES_SAMPLER_ARG"); arg != "" {
			if r, err := strconv.ParseFloat(arg, 64); err != nil || r < 0 || r > 1 {
				return bad("OTEL_TRACES_SAMPLER_ARG", "%q is not a ratio from 0 to 1 (0.01 samples 1 %%)", arg)
			}
		}
	default:
		return bad("OTEL_TRACES_SAMPLER", "%q is not one of always_on, always_off, traceidratio, "+
			"parentbased_always_on, parentbased_always_off, parentbased_traceidratio", v)
	}
	if v := get("OTEL_PROPAGATORS"); v != "" {
		s.Propagators = nil
		for _, p := range splitList(v) {
			switch p {
			case "tracecontext", "baggage":
				s.Propagators = append(s.Propagators, p)
			case "none":
			default:
				return bad("OTEL_PROPAGATORS", "%q is not one of tracecontext, baggage, none", p)
			}
		}
	}
	if v := get("OTEL_RESOURCE_ATTRIBUTES"); v != "" {
		for _, kv := range strings.Split(v, ",") {
			if k, _, ok := strings.Cut(kv, "="); !ok || strings.TrimSpace(k) == "" {
				return bad("OTEL_RESOURCE_ATTRIBUTES", "%q is not a list of key=value", v)
			}
		}
	}
	s.Enabled = !disabled && len(s.Exporters) > 0
	return s, nil
}

// checkHeaders checks an OTLP headers setting: key=value pairs, comma
// separated, values percent-encoded.
func checkHeaders(v string) error {
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return errors.New("not a list of key=value")
		}
		if _, err := url.PathUnescape(strings.TrimSpace(val)); err != nil {
			return fmt.Errorf("the value of %s is not percent-encoded", strings.TrimSpace(k))
		}
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.ToLower(strings.TrimSpace(item)); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Options are what Setup needs besides the settings.
type Options struct {
	Service string    // service.name unless OTEL_SERVICE_NAME says otherwise
	Version string    // service.version
	Console io.Writer // where the console exporter writes
	Log     *zap.Logger
}

// Setup starts tracing as s says. With tracing off it returns a nil
// provider and a shutdown that does nothing. Otherwise the provider
// batches spans to the exporters; shutdown sends what is left (give it a
// deadline).
//
// It sets the SDK's global error handler and logger, so that an export
// that fails is one JSON log line like the program's others, and the
// global propagator (W3C trace context and baggage, or OTEL_PROPAGATORS).
// Nothing on the request path looks a global up: the provider is passed
// to what uses it.
func Setup(ctx context.Context, s Settings, o Options) (trace.TracerProvider, func(context.Context) error, error) {
	nothing := func(context.Context) error { return nil }
	if !s.Enabled {
		return nil, nothing, nil
	}
	log := o.Log.Named("tracing")
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing failed", zap.Error(err)) }))
	otel.SetLogger(funcr.New(func(prefix, args string) { log.Debug(prefix, zap.String("detail", args)) }, funcr.Options{}))
	var props []propagation.TextMapPropagator
	for _, p := range s.Propagators {
		switch p {
		case "tracecontext":
			props = append(props, propagation.TraceContext{})
		case "baggage":
			props = append(props, propagation.Baggage{})
		}
	}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(props...))

	// The program's name and version first: OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES, detected after, override them.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", o.Service), attribute.String("service.version", o.Version)),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, nothing, &SettingError{Var: "OTEL_RESOURCE_ATTRIBUTES", Err: err}
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, e := range s.Exporters {
		var exp sdktrace.SpanExporter
		switch {
		case e == "console":
			exp, err = stdouttrace.New(stdouttrace.WithWriter(o.Console))
		case s.Protocol == "grpc":
			exp, err = otlptracegrpc.New(ctx)
		default:
			exp, err = otlptracehttp.New(ctx)
		}
		if err != nil {
			return nil, nothing, fmt.Errorf("tracing: %s exporter: %w", e, err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	log.Info("tracing on", zap.Strings("exporters", s.Exporters), zap.String("protocol", s.Protocol),
		zap.String("service_name", serviceName(res)))
	return tp, tp.Shutdown, nil
}

func serviceName(r *resource.Resource) string {
	v, _ := r.Set().Value("service.name")
	return v.AsString()
}

// Handler wraps h in a server span per request, continuing the caller's
// trace (its traceparent header). skip, if not nil, names requests that
// get no span (probes). With tp nil it returns h itself.
func Handler(h http.Handler, tp trace.TracerProvider, skip func(*http.Request) bool) http.Handler {
	if tp == nil {
		return h
	}
	opts := []otelhttp.Option{
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(otel.GetTextMapPropagator()),
		// Spans only: the metrics are Prometheus's.
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
	}
	if skip != nil {
		opts = append(opts, otelhttp.WithFilter(func(r *http.Request) bool { return !skip(r) }))
	}
	return otelhttp.NewHandler(h, "http.server", opts...)
}

// Probe reports requests for the health and readiness probes, which a
// trace of every few seconds would only drown the others in.
func Probe(r *http.Request) bool { return r.URL.Path == "/healthz" || r.URL.Path == "/readyz" }
