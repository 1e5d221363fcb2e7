// Package telemetry makes the registry observable: Prometheus metrics on a
// registry of its own (no global one), OpenTelemetry traces exported over
// OTLP when the standard OTEL_* variables ask for it, and the W3C trace
// context propagated even when nothing is exported, so that logs and
// downstream subscribers correlate without a collector. Its decorators wrap
// the ports of the command side (event store, sealer, prober) and the
// projector's batch handler, so no handler repeats instrumentation.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"net/http"

	"github.com/connreg/registry/internal/buildinfo"
)

// Telemetry is what the service reports through. A nil *Telemetry, or one
// from Off, reports nothing and costs nothing: every decorator then returns
// what it was given.
type Telemetry struct {
	// Registry holds every metric; /metrics serves it.
	Registry *prometheus.Registry
	// Tracing is the tracer provider: the SDK with an OTLP exporter when
	// configured, a no-op one otherwise (which still carries an incoming
	// trace context through, without recording).
	Tracing trace.TracerProvider
	// Propagator reads and writes the W3C trace context (traceparent,
	// tracestate) in HTTP and NATS headers.
	Propagator propagation.TextMapPropagator
	// Exporting is true when spans are recorded and exported (OTEL_*
	// configured, or a test's tracer provider). Without it no span is
	// started at all; only an incoming trace context is carried along.
	Exporting bool

	m        *metrics
	shutdown func(context.Context) error
}

// Off is telemetry switched off entirely (benchmarks compare against it).
func Off() *Telemetry { return nil }

// New builds telemetry for service (the default service.name): metrics
// always, with the Go runtime and process collectors; traces exported with
// OTLP over HTTP/protobuf when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, unless OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none. The exporter itself reads the other standard
// variables (headers, timeout, certificates, OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_BSP_*) from the process
// environment.
func New(ctx context.Context, getenv func(string) string, service string) (*Telemetry, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	t := &Telemetry{
		Registry:   reg,
		Tracing:    noop.NewTracerProvider(),
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		m:          newMetrics(reg),
		shutdown:   func(context.Context) error { return nil },
	}
	on, err := exportRequested(getenv)
	if err != nil {
		return nil, err
	}
	if on {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %w", err)
		}
		res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK(),
			resource.WithAttributes(semconv.ServiceName(service), semconv.ServiceVersion(buildinfo.Read().Version)))
		if err != nil && !errors.Is(err, resource.ErrPartialResource) {
			return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
		}
		if name := getenv("OTEL_SERVICE_NAME"); name != "" {
			res, _ = resource.Merge(res, resource.NewSchemaless(semconv.ServiceName(name)))
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		t.Tracing, t.Exporting, t.shutdown = tp, true, tp.Shutdown
	}
	return t, nil
}

// WithTracerProvider replaces the tracer provider (tests use an in-memory
// exporter through it).
func (t *Telemetry) WithTracerProvider(tp trace.TracerProvider) *Telemetry {
	c := *t
	c.Tracing, c.Exporting = tp, true
	return &c
}

// exportRequested reads whether the OTEL_* variables ask for an exporter.
func exportRequested(getenv func(string) string) (bool, error) {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false, nil
	}
	switch e := strings.ToLower(getenv("OTEL_TRACES_EXPORTER")); e {
	case "none":
		return false, nil
	case "", "otlp":
	default:
		return false, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: only otlp or none are supported", e)
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := getenv(k); p != "" {
			if p != "http/protobuf" {
				return false, fmt.Errorf("%s=%q: only http/protobuf is supported", k, p)
			}
			break
		}
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "", nil
}

// Tracer is the registry's tracer (a no-op one when t is nil).
func (t *Telemetry) Tracer() trace.Tracer {
	if t == nil {
		return noop.NewTracerProvider().Tracer(scope)
	}
	return t.Tracing.Tracer(scope)
}

const scope = "github.com/connreg/registry"

// MetricsHandler serves the registry in the Prometheus text format; nil when
// t is nil.
func (t *Telemetry) MetricsHandler() http.Handler {
	if t == nil {
		return nil
	}
	return promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{Registry: t.Registry})
}

// Shutdown flushes the spans not yet exported.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.shutdown(ctx)
}
