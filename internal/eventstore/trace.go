package eventstore

import (
	"context"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/connreg/registry/events"
)

// W3C Trace Context headers on every traced event message (the CloudEvents
// NATS binding carries the distributed-tracing extension under these names).
const (
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// Observer lets the store report what only it sees. Every field is optional.
type Observer struct {
	// Propagator writes the caller's trace context into each event (its
	// envelope and its NATS headers), so the projector and downstream
	// subscribers continue the trace.
	Propagator propagation.TextMapPropagator
	// Tracer makes a span around a name claim.
	Tracer trace.Tracer
	// Takeover is called when a writer takes over an abandoned claim (a
	// lease whose holder died between claim and event, or lost a release).
	Takeover func()
}

func (o Observer) takeover() {
	if o.Takeover != nil {
		o.Takeover()
	}
}

// stamp puts ctx's trace context into the event's metadata.
func (o Observer) stamp(ctx context.Context, e *events.Event) {
	if o.Propagator == nil {
		return
	}
	c := propagation.MapCarrier{}
	o.Propagator.Inject(ctx, c)
	e.TraceParent, e.TraceState = c[HeaderTraceParent], c[HeaderTraceState]
}

// span starts a span named name when a tracer is set; end records err.
func (o Observer) span(ctx context.Context, name string) (context.Context, func(error)) {
	if o.Tracer == nil {
		return ctx, func(error) {}
	}
	ctx, sp := o.Tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal))
	return ctx, func(err error) {
		if err != nil {
			sp.RecordError(err)
			sp.SetStatus(codes.Error, err.Error())
		}
		sp.End()
	}
}
