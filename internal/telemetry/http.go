package telemetry

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
)

// HTTP returns the Gin middlewares of the API: the OpenTelemetry one (a span
// per request, continuing an incoming traceparent; the probes and /metrics
// are not traced) and the request metrics by route template. Nil when t is.
// When no span is recorded (no exporter), the OpenTelemetry middleware would
// still compute every HTTP attribute of a span nobody sees: a light one only
// carries the incoming trace context into the request instead.
func (t *Telemetry) HTTP(service string) []gin.HandlerFunc {
	if t == nil {
		return nil
	}
	if !t.Exporting {
		return []gin.HandlerFunc{t.continueTrace, t.httpMetrics}
	}
	quiet := map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}
	trace := otelgin.Middleware(service,
		otelgin.WithTracerProvider(t.Tracing),
		otelgin.WithPropagators(t.Propagator),
		otelgin.WithMeterProvider(metricnoop.NewMeterProvider()), // the metrics are Prometheus's, below
		otelgin.WithGinFilter(func(c *gin.Context) bool { return !quiet[c.FullPath()] }),
	)
	return []gin.HandlerFunc{trace, t.httpMetrics}
}

func (t *Telemetry) httpMetrics(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched" // a 404 or 405: never the raw path, which would be unbounded
	}
	method := c.Request.Method
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
	default:
		method = "other"
	}
	t.m.httpRequests.WithLabelValues(route, method, strconv.Itoa(c.Writer.Status())).Inc()
	t.m.httpDuration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
}

// continueTrace puts an incoming W3C trace context into the request's
// context, so that the events it appends carry it and its log lines name it.
func (t *Telemetry) continueTrace(c *gin.Context) {
	if c.GetHeader("traceparent") != "" {
		ctx := t.Propagator.Extract(c.Request.Context(), propagation.HeaderCarrier(c.Request.Header))
		c.Request = c.Request.WithContext(ctx)
	}
	c.Next()
}
