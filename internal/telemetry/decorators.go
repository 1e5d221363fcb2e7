package telemetry

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/readmodel"
)

// end finishes a span, recording err.
func end(sp trace.Span, err error) {
	if sp == nil {
		return
	}
	if err != nil {
		sp.RecordError(err)
		sp.SetStatus(codes.Error, err.Error())
	}
	sp.End()
}

// outcome names an error for a metric label.
func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, domain.ErrNameTaken):
		return "name_taken"
	case errors.Is(err, domain.ErrConcurrentChange):
		return "conflict"
	case errors.Is(err, domain.ErrNotFound):
		return "not_found"
	case domain.IsUnavailable(err):
		return "unavailable"
	}
	return "error"
}

// EventStore wraps the event store's Append with a span (whose context the
// store writes into the events) and the append metrics.
func (t *Telemetry) EventStore(inner commands.EventStore) commands.EventStore {
	if t == nil {
		return inner
	}
	return eventStore{inner, t}
}

type eventStore struct {
	inner commands.EventStore
	t     *Telemetry
}

func (s eventStore) Append(ctx context.Context, a commands.Append) (uint64, error) {
	var sp trace.Span // nil: not started; without an exporter no span is, so the default costs metrics only
	if s.t.Exporting {
		ctx, sp = s.t.Tracer().Start(ctx, "eventstore.append", trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.Int("connreg.events", len(a.Events))))
	}
	start := time.Now()
	seq, err := s.inner.Append(ctx, a)
	s.t.m.appendDuration.Observe(time.Since(start).Seconds())
	o := outcome(err)
	s.t.m.appends.WithLabelValues(o).Inc()
	if o == "name_taken" {
		s.t.m.nameConflicts.Inc()
	}
	if err == nil && sp != nil {
		sp.SetAttributes(attribute.Int64("messaging.nats.stream_sequence", int64(seq)))
	}
	end(sp, err)
	return seq, err
}

// Sealer is what the service needs of a sealer (bootstrap.Sealer).
type Sealer interface {
	commands.Sealer
	commands.Unsealer
	commands.SecretDescriber
}

// Seal wraps a sealer's calls to its backend (seal, unseal) with spans and
// metrics, labelled kind ("vault", "dev"); Describe, local, passes through.
func (t *Telemetry) Seal(inner Sealer, kind string) Sealer {
	if t == nil {
		return inner
	}
	return sealer{inner, t, kind}
}

type sealer struct {
	Sealer
	t    *Telemetry
	kind string
}

func (s sealer) observe(ctx context.Context, op string) (context.Context, func(error)) {
	var sp trace.Span // nil: not started
	if s.t.Exporting {
		ctx, sp = s.t.Tracer().Start(ctx, "sealer."+op, trace.WithAttributes(attribute.String("connreg.sealer", s.kind)))
	}
	start := time.Now()
	return ctx, func(err error) {
		s.t.m.sealerDuration.WithLabelValues(s.kind, op).Observe(time.Since(start).Seconds())
		o := "ok"
		if err != nil {
			o = "error"
			if domain.IsUnavailable(err) {
				o = "unavailable"
			}
		}
		s.t.m.sealerOps.WithLabelValues(s.kind, op, o).Inc()
		end(sp, err)
	}
}

func (s sealer) Seal(ctx context.Context, binding string, plaintext []byte) (domain.SealedSecret, error) {
	ctx, done := s.observe(ctx, "seal")
	out, err := s.Sealer.Seal(ctx, binding, plaintext)
	done(err)
	return out, err
}

func (s sealer) Unseal(ctx context.Context, binding string, sealed domain.SealedSecret) ([]byte, error) {
	ctx, done := s.observe(ctx, "unseal")
	out, err := s.Sealer.Unseal(ctx, binding, sealed)
	done(err)
	return out, err
}

// Prober wraps the connection tester with a span and the test metrics.
func (t *Telemetry) Prober(inner commands.Prober) commands.Prober {
	if t == nil {
		return inner
	}
	return prober{inner, t}
}

type prober struct {
	inner commands.Prober
	t     *Telemetry
}

func (p prober) Probe(ctx context.Context, target commands.ProbeTarget) (commands.ProbeResult, error) {
	var sp trace.Span // nil: not started
	if p.t.Exporting {
		ctx, sp = p.t.Tracer().Start(ctx, "connection.test", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system", target.Engine)))
	}
	start := time.Now()
	res, err := p.inner.Probe(ctx, target)
	p.t.m.testDuration.WithLabelValues(target.Engine).Observe(time.Since(start).Seconds())
	status, reason := res.Status, res.Reason
	switch {
	case errors.Is(err, commands.ErrTargetRefused):
		status = "refused"
	case errors.Is(err, commands.ErrProbeBusy):
		status = "busy"
	case err != nil:
		status = "error"
	}
	p.t.m.tests.WithLabelValues(target.Engine, status, reason).Inc()
	if sp != nil {
		sp.SetAttributes(attribute.String("connreg.test.status", status), attribute.String("connreg.test.reason", reason))
	}
	end(sp, err)
	return res, err
}

// BatchHandler is the projector's batch handler (eventstore.BatchHandler).
type BatchHandler = func(ctx context.Context, batch []readmodel.Message) error

// Projection wraps the projector's batch handler: a span per batch, and a
// span per traced event, a child of the append that stored it (so one trace
// runs from the request through the append to the projection) linked to the
// batch span. The batch span does not link back to every event: with up to
// 128 events a batch, those links were most of the exported bytes. It
// records the batch metrics.
func (t *Telemetry) Projection(inner BatchHandler) BatchHandler {
	if t == nil {
		return inner
	}
	tracer := t.Tracer()
	return func(ctx context.Context, batch []readmodel.Message) error {
		if !t.Exporting {
			start := time.Now()
			err := inner(ctx, batch)
			t.batchDone(batch, start, err)
			return err
		}
		parents := make([]context.Context, 0, len(batch))
		for _, m := range batch {
			if m.TraceParent == "" {
				continue
			}
			pctx := t.Propagator.Extract(context.Background(), propagation.MapCarrier{"traceparent": m.TraceParent, "tracestate": m.TraceState})
			// An unsampled parent would only yield a non-recording span.
			if sc := trace.SpanContextFromContext(pctx); sc.IsValid() && sc.IsSampled() {
				parents = append(parents, pctx)
			}
		}
		ctx, sp := tracer.Start(ctx, "readmodel.project batch", trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.Int("connreg.batch.traced", len(parents)), attribute.Int("connreg.batch.size", len(batch)), attribute.Int64("connreg.batch.first", int64(batch[0].Sequence))))
		children := make([]trace.Span, 0, len(parents))
		for _, p := range parents {
			_, c := tracer.Start(p, "readmodel.project", trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithLinks(trace.Link{SpanContext: sp.SpanContext()}))
			children = append(children, c)
		}
		start := time.Now()
		err := inner(ctx, batch)
		t.batchDone(batch, start, err)
		for _, c := range children {
			end(c, err)
		}
		end(sp, err)
		return err
	}
}

// batchDone records a batch's metrics.
func (t *Telemetry) batchDone(batch []readmodel.Message, start time.Time, err error) {
	t.m.batchDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		t.m.batches.WithLabelValues("failed").Inc()
		return
	}
	t.m.batches.WithLabelValues("written").Inc()
	t.m.projected.Add(float64(len(batch)))
	now := time.Now()
	for _, m := range batch {
		if !m.Stored.IsZero() {
			t.m.projectionDelay.Observe(now.Sub(m.Stored).Seconds())
		}
	}
}

// ProjectionStore wraps the projector's store: a span and a duration per
// bulk write.
func (t *Telemetry) ProjectionStore(inner readmodel.Store) readmodel.Store {
	if t == nil {
		return inner
	}
	return projectionStore{inner, t}
}

type projectionStore struct {
	readmodel.Store
	t *Telemetry
}

func (s projectionStore) Write(ctx context.Context, writes []readmodel.Write) error {
	var sp trace.Span // nil: not started
	if s.t.Exporting {
		ctx, sp = s.t.Tracer().Start(ctx, "readmodel.write", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system", "mongodb"), attribute.Int("connreg.documents", len(writes))))
	}
	start := time.Now()
	err := s.Store.Write(ctx, writes)
	o := "ok"
	if err != nil {
		o = "error"
	}
	s.t.m.storeWrites.WithLabelValues(o).Observe(time.Since(start).Seconds())
	end(sp, err)
	return err
}
