package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/connreg/registry/internal/buildinfo"
)

// metrics are the registry's own series. Labels carry only bounded values
// (route templates, methods, statuses, outcomes, engine types, reasons):
// never an id, a config name or a host.
type metrics struct {
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec

	appends        *prometheus.CounterVec
	appendDuration prometheus.Histogram
	nameConflicts  prometheus.Counter
	takeovers      prometheus.Counter

	sealerOps      *prometheus.CounterVec
	sealerDuration *prometheus.HistogramVec

	tests        *prometheus.CounterVec
	testDuration *prometheus.HistogramVec

	batches         *prometheus.CounterVec
	batchDuration   prometheus.Histogram
	projected       prometheus.Counter
	projectionDelay prometheus.Histogram
	parked          prometheus.Counter
	lagSeconds      prometheus.Gauge
	lagEvents       prometheus.Gauge
	pending         prometheus.Gauge
	storeWrites     *prometheus.HistogramVec
}

// fast are latency buckets for calls that take microseconds to a second.
var fast = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := factory{reg}
	m := &metrics{
		httpRequests: f.counterVec("connreg_http_requests_total", "HTTP requests answered, by route template, method and status.", "route", "method", "status"),
		httpDuration: f.histogramVec("connreg_http_request_duration_seconds", "Time to answer an HTTP request, by route template and method.", fast, "route", "method"),

		appends:        f.counterVec("connreg_eventstore_appends_total", "Appends to the event stream, by outcome (ok, name_taken, conflict, not_found, unavailable, error).", "outcome"),
		appendDuration: f.histogram("connreg_eventstore_append_duration_seconds", "Time of an append (name claim, events, release) to the event stream.", fast),
		nameConflicts:  f.counter("connreg_name_claim_conflicts_total", "Creates and renames refused because another connection holds the name."),
		takeovers:      f.counter("connreg_name_claim_takeovers_total", "Abandoned name claims (leases) taken over by a new writer."),

		sealerOps:      f.counterVec("connreg_sealer_operations_total", "Seal and unseal calls, by sealer (vault, dev), operation and outcome (ok, unavailable, error).", "sealer", "operation", "outcome"),
		sealerDuration: f.histogramVec("connreg_sealer_duration_seconds", "Time of a seal or unseal call, by sealer and operation.", fast, "sealer", "operation"),

		tests:        f.counterVec("connreg_connection_tests_total", "Connection tests, by engine type, status (success, failure, refused, busy, error) and failure reason.", "type", "status", "reason"),
		testDuration: f.histogramVec("connreg_connection_test_duration_seconds", "Time of a connection test, by engine type.", prometheus.DefBuckets, "type"),

		batches:         f.counterVec("connreg_projector_batches_total", "Projection batches, by outcome (written, failed: retried).", "outcome"),
		batchDuration:   f.histogram("connreg_projector_batch_duration_seconds", "Time to project one batch into the read model.", fast),
		projected:       f.counter("connreg_projector_events_total", "Events the projector handled (applied, skipped as already applied, or parked)."),
		projectionDelay: f.histogram("connreg_projection_delay_seconds", "Time from an event's storage in the stream to its projection.", fast),
		parked:          f.counter("connreg_projector_parked_events_total", "Events the projector could not apply and parked with their reason."),
		lagSeconds:      f.gauge("connreg_projection_lag_seconds", "Age of the oldest event not yet projected (0 when the read model is current)."),
		lagEvents:       f.gauge("connreg_projection_lag_events", "Events stored but not yet acknowledged by the projector's consumer."),
		pending:         f.gauge("connreg_projector_consumer_pending", "Events the projector's consumer has not delivered yet."),
		storeWrites:     f.histogramVec("connreg_readmodel_write_duration_seconds", "Time of one bulk write into the read model, by outcome.", fast, "outcome"),
	}
	info := f.gaugeVec("connreg_build_info", "The running build: always 1, labelled with version, commit and Go version.", "version", "commit", "goversion")
	bi := buildinfo.Read()
	info.WithLabelValues(bi.Version, bi.Commit, bi.GoVersion).Set(1)
	return m
}

type factory struct{ reg prometheus.Registerer }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

// CounterFunc registers a counter read from f at scrape time, for counts an
// adapter keeps itself (Vault token renewals).
func (t *Telemetry) CounterFunc(name, help string, f func() float64) {
	if t == nil {
		return
	}
	t.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// ProjectionLag records the projector consumer's position: the age of the
// oldest unprojected event, the events not yet acknowledged, and those not
// yet delivered.
func (t *Telemetry) ProjectionLag(seconds float64, events, pending uint64) {
	if t == nil {
		return
	}
	t.m.lagSeconds.Set(seconds)
	t.m.lagEvents.Set(float64(events))
	t.m.pending.Set(float64(pending))
}

// Parked counts parked events (readmodel.Projector.OnParked).
func (t *Telemetry) Parked(n int) {
	if t != nil {
		t.m.parked.Add(float64(n))
	}
}

// Takeover counts a name-claim lease takeover (eventstore.Observer).
func (t *Telemetry) Takeover() {
	if t != nil {
		t.m.takeovers.Inc()
	}
}
