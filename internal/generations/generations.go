// Package generations runs the read model's lifecycle over the event stream:
// the live projector that follows generation switches, replay into a new
// generation, and verify against the fold of the stream. It works on any
// read-model store through the ReadModel port (sqlitestore, mongostore).
package generations

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/eventstore"
	"github.com/connreg/registry/internal/retry"
	"github.com/connreg/registry/internal/telemetry"
	"github.com/connreg/registry/readmodel"
)

// Read-model generations.
//
// A generation is one complete read model: its own collection (generation 0
// is "connections", generation N "connections_gN") filled by its own durable
// consumer ("readmodel-projector", "readmodel-projector-gN"). The meta
// document (readmodel.GenerationCollection) names the active one. Replay builds
// generation N+1 next to the active generation N while the service keeps
// serving from N, then activates N+1 with one guarded update of the meta
// document. The live projectors and the API processes look at the meta
// document every GenerationPoll: a projector that sees a new generation
// stops its consumer, loads the new collection into its index and goes on
// with the new generation's durable consumer, from where replay left it, so
// no event is lost or applied twice (and an event applied twice would change
// nothing: documents carry their version). Readers of a process move in one
// step (an atomic pointer to the repository and Index.ReplaceWith), never
// seeing a mix of two generations. The old collection and consumer stay, for
// inspection or a return; removing them is the operator's call.

// Batch sizes. The live projector favours latency: a small batch bounds the
// projection lag; a replay favours throughput.
const (
	ProjectorBatch = 128
	ReplayBatch    = 512
)

// ReadModel is one generation's collection of a read-model store, and the
// store's generation record: what the projector, the API's reads, replay and
// verify need. Two adapters meet it: sqlitestore (embedded, the default) and
// mongostore (MONGO_URI); readmodeltest is their shared contract.
type ReadModel interface {
	readmodel.Store
	Get(ctx context.Context, id string) (*readmodel.Document, error)
	List(ctx context.Context, q readmodel.ListQuery) (readmodel.ListResult, error)
	Each(ctx context.Context, fn func(*readmodel.Document)) error
	Overwrite(ctx context.Context, docs []*readmodel.Document) error
	ReplaceDocument(ctx context.Context, d *readmodel.Document) error
	Drop(ctx context.Context) error
	EnsureIndexes(ctx context.Context) error
	ParkedCount(ctx context.Context) (int64, error)
	Ping(ctx context.Context) error
	Parked(ctx context.Context) ([]readmodel.Parked, error)
	Collection() string
	Active(ctx context.Context, consumer0 string) (readmodel.Generation, error)
	Lease(ctx context.Context, consumer0 string, active, pending int, owner string, until, now time.Time) error
	ReleaseLease(ctx context.Context, owner string) error
	Activate(ctx context.Context, from int, owner string, next readmodel.Generation, now time.Time) error
	// WithCollection is generation collection name's repository in the same store.
	WithCollection(name string) ReadModel
	// CollectionFor is the collection of generation gen.
	CollectionFor(gen int) string
	Close(ctx context.Context) error
}

// GenerationPoll is how often live projectors and API processes look for a
// newly activated generation: the longest a process keeps serving the old
// generation after a replay activated a new one.
var GenerationPoll = time.Second

// replayLease is how long a replay's claim on the pending generation lasts
// without renewal: a crashed replay blocks the next one at most this long.
const replayLease = 20 * time.Second

// consumerFor is the durable consumer of generation gen.
func ConsumerFor(base string, gen int) string {
	if gen == 0 {
		return base
	}
	return base + "-g" + strconv.Itoa(gen)
}

// LiveReadModel is the repository of the active generation, switched in one
// step: the projector's store and the API's reader.
type LiveReadModel struct {
	cur atomic.Pointer[ReadModel]
}

// NewLiveReadModel starts on r.
func NewLiveReadModel(r ReadModel) *LiveReadModel {
	l := &LiveReadModel{}
	l.SwitchTo(r)
	return l
}

// Repo is the active generation's repository.
func (l *LiveReadModel) Repo() ReadModel { return *l.cur.Load() }

// SwitchTo moves every reader and the projector to r in one step.
func (l *LiveReadModel) SwitchTo(r ReadModel) { l.cur.Store(&r) }

func (l *LiveReadModel) Documents(ctx context.Context, ids []string) (map[string]*readmodel.Document, error) {
	return l.Repo().Documents(ctx, ids)
}

func (l *LiveReadModel) Write(ctx context.Context, writes []readmodel.Write) error {
	return l.Repo().Write(ctx, writes)
}

func (l *LiveReadModel) Park(ctx context.Context, parked []readmodel.Parked) error {
	return l.Repo().Park(ctx, parked)
}

func (l *LiveReadModel) Get(ctx context.Context, id string) (*readmodel.Document, error) {
	return l.Repo().Get(ctx, id)
}

func (l *LiveReadModel) List(ctx context.Context, q readmodel.ListQuery) (readmodel.ListResult, error) {
	return l.Repo().List(ctx, q)
}

// Watermark is the projection watermark of an API process without
// its own projector: the active generation's consumer, switched with it.
type Watermark struct {
	cur atomic.Pointer[eventstore.ConsumerWatermark]
}

// WaitFor waits until the active generation's consumer passed seq.
func (w *Watermark) WaitFor(ctx context.Context, seq uint64) error {
	return w.cur.Load().WaitFor(ctx, seq)
}

// Follow makes the watermark the one of consumer (a generation switch).
func (w *Watermark) Follow(js jetstream.JetStream, consumer string) {
	w.cur.Store(eventstore.NewConsumerWatermark(js, consumer))
}

// SwitchTo is a generation a live projector is about to move to, with its
// documents loaded.
type SwitchTo struct {
	Meta readmodel.Generation
	Repo ReadModel
	Idx  *readmodel.Index // nil unless the watcher was asked to load it
}

// projectGenerations runs the live projector: it consumes the active
// generation's durable consumer into it and follows the generation changes
// replay makes, until ctx ends. idx (nil: none) is the index the projector
// keeps; it is replaced by the new generation's documents at a switch.
func ProjectGenerations(ctx context.Context, js jetstream.JetStream, base ReadModel, live *LiveReadModel,
	proj *readmodel.Projector, idx *readmodel.Index, meta readmodel.Generation, logger *slog.Logger, tel *telemetry.Telemetry) error {
	handle := tel.Projection(proj.Project)
	// Events parked before this start are acknowledged and will not come
	// back: say so at every start, so that a connection missing from lists
	// is never a silent loss.
	if n, err := base.ParkedCount(ctx); err == nil && n > 0 {
		logger.Warn("the read model has parked events: their connections are missing or stale in lists",
			"parkedEvents", n, "collection", "parked_events")
	}
	backoff := retry.Backoff(time.Second, 30*time.Second)
	for {
		gctx, cancel := context.WithCancel(ctx)
		next := make(chan SwitchTo, 1)
		go WatchGeneration(gctx, base, meta, idx != nil, logger, func(s SwitchTo) {
			next <- s
			cancel()
		})
		err := eventstore.Consume(gctx, js, meta.Consumer, ProjectorBatch, logger, handle)
		cancel()
		select {
		case s := <-next:
			// The old consumer is stopped and nothing projects: move.
			p, perr := eventstore.Progress(ctx, js, s.Meta.Consumer)
			if perr != nil {
				if ctx.Err() != nil {
					return nil
				}
				logger.Warn("read model switch delayed: consumer unavailable", "consumer", s.Meta.Consumer, "error", perr.Error())
				time.Sleep(GenerationPoll)
				continue // still on the old generation; the watcher finds the new one again
			}
			live.SwitchTo(s.Repo)
			if idx != nil {
				idx.ReplaceWith(s.Idx)
			}
			proj.Restart(p.Acknowledged)
			logger.Info("read model switched to a new generation", "from", meta.Generation, "generation", s.Meta.Generation,
				"collection", s.Meta.Collection, "consumer", s.Meta.Consumer, "projected", p.Acknowledged)
			meta = s.Meta
			continue
		default:
		}
		if err == nil || ctx.Err() != nil {
			return err
		}
		// The consumer could not be created or read (NATS restarting, say):
		// try again rather than leave the read model behind for good.
		pause := backoff.NextBackOff()
		logger.Warn("projector consumer failed; retrying", "consumer", meta.Consumer, "error", err.Error(), "in", pause.String())
		if !retry.Wait(ctx, pause) {
			return nil
		}
	}
}

// WatchGeneration looks at the meta document every GenerationPoll and, when
// another generation than meta's is active, loads it (its documents into a
// new index when loadIndex) and calls found once.
func WatchGeneration(ctx context.Context, base ReadModel, meta readmodel.Generation, loadIndex bool, logger *slog.Logger, found func(SwitchTo)) {
	t := time.NewTicker(GenerationPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m, err := base.Active(ctx, meta.Consumer)
		if err != nil || m.Generation == meta.Generation {
			continue
		}
		s := SwitchTo{Meta: m, Repo: base.WithCollection(m.Collection)}
		if loadIndex {
			s.Idx = readmodel.NewIndex()
			start := time.Now()
			if err := s.Repo.Each(ctx, s.Idx.Put); err != nil {
				if ctx.Err() == nil {
					logger.Warn("loading the new read-model generation failed; retrying", "generation", m.Generation, "error", err.Error())
				}
				continue
			}
			logger.Info("new read-model generation loaded", "generation", m.Generation, "documents", s.Idx.Len(),
				"durationMs", time.Since(start).Milliseconds())
		}
		found(s)
		return
	}
}

// ReplayProgress is how far a replay is.
type ReplayProgress struct {
	Generation int
	Done       uint64 // events handled, by earlier runs of a resumed replay too
	Total      uint64 // Done plus the events still pending
	Elapsed    time.Duration
	Rate       float64 // events per second in this run
}

// ReplayResult is what a replay did.
type ReplayResult struct {
	Generation int
	Previous   int
	Collection string
	Consumer   string
	Resumed    bool
	Events     uint64 // events handled by this run
	Documents  int
	Duration   time.Duration
}

// ReplayOptions tune Replay; the zero value is the service's.
type ReplayOptions struct {
	// Consumer is generation 0's durable consumer, the stem of the others
	// (default eventstore.ProjectorConsumer).
	Consumer string
	// Batch is the largest batch projected at once (default ReplayBatch).
	Batch int
	// Progress, when not nil, is called after every batch.
	Progress func(ReplayProgress)
	// Now is the clock of leases and parked events (default time.Now).
	Now func() time.Time
}

// Replay rebuilds the read model from the first event into a new generation
// and activates it. Guarantees:
//
//   - The active generation keeps serving, and its projector keeps running,
//     untouched until the activation; replay writes only the new collection.
//   - The activation is one guarded update of the meta document (only from
//     the generation that was active when the replay started, and only by
//     the holder of the replay lease), made after the new generation's
//     consumer had nothing pending: it reflects every event appended before,
//     and the live projector continues it from exactly there.
//   - One replay at a time: the pending generation is leased (renewed while
//     the replay runs). A rerun after a crash, or after ctx ended, resumes the
//     pending generation: the same collection and durable consumer, from the
//     consumer's acknowledgement floor. A batch the crash left half written is
//     re-applied idempotently (documents carry their version).
//   - A read-model outage pauses the replay (the batch is retried); it never
//     skips an event. An event that cannot be applied is parked, as the live
//     projector parks it.
func Replay(ctx context.Context, js jetstream.JetStream, base ReadModel, logger *slog.Logger, opts ReplayOptions) (ReplayResult, error) {
	if opts.Consumer == "" {
		opts.Consumer = eventstore.ProjectorConsumer
	}
	if opts.Batch <= 0 {
		opts.Batch = ReplayBatch
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	start := opts.Now()
	owner := uuid.NewString()
	var res ReplayResult

	// Take the lease on the generation to build, waiting for a crashed
	// replay's lease to run out.
	var meta readmodel.Generation
	for {
		var err error
		if meta, err = base.Active(ctx, opts.Consumer); err != nil {
			return res, err
		}
		res.Generation, res.Resumed = meta.Generation+1, false
		if meta.Pending != 0 {
			res.Generation, res.Resumed = meta.Pending, true
		}
		now := opts.Now()
		err = base.Lease(ctx, opts.Consumer, meta.Generation, res.Generation, owner, now.Add(replayLease), now)
		if err == nil {
			break
		}
		if !errors.Is(err, readmodel.ErrGenerationMoved) {
			return res, err
		}
		logger.Warn("another replay holds the lease; waiting for it to finish or expire",
			"generation", res.Generation, "until", meta.PendingUntil)
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	activated := false
	defer func() {
		if !activated {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = base.ReleaseLease(rctx, owner)
		}
	}()
	res.Previous = meta.Generation
	res.Collection = base.CollectionFor(res.Generation)
	res.Consumer = ConsumerFor(opts.Consumer, res.Generation)

	// Renew the lease while the replay runs; losing it stops the replay.
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		t := time.NewTicker(replayLease / 4)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
			}
			now := opts.Now()
			if err := base.Lease(rctx, opts.Consumer, meta.Generation, res.Generation, owner, now.Add(replayLease), now); err != nil {
				if errors.Is(err, readmodel.ErrGenerationMoved) {
					cancel(fmt.Errorf("replay lease lost: %w", err))
					return
				}
				logger.Warn("replay lease renewal failed; retrying", "error", err.Error())
			}
		}
	}()

	repo := base.WithCollection(res.Collection)
	if !res.Resumed {
		// A fresh generation starts from nothing: drop what an abandoned
		// attempt without a pending mark may have left under these names.
		if err := js.DeleteConsumer(rctx, events.StreamName, res.Consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return res, fmt.Errorf("replay: delete leftover consumer %s: %w", res.Consumer, err)
		}
		if err := repo.Drop(rctx); err != nil {
			return res, err
		}
	}
	if err := repo.EnsureIndexes(rctx); err != nil {
		return res, err
	}
	idx := readmodel.NewIndex()
	if err := repo.Each(rctx, idx.Put); err != nil {
		return res, fmt.Errorf("replay: load %s: %w", res.Collection, err)
	}
	already := uint64(0)
	if res.Resumed {
		p, err := eventstore.Progress(rctx, js, res.Consumer)
		if err != nil {
			return res, err
		}
		if p.Exists {
			already = resumedEvents(rctx, js, res.Consumer, p.Acknowledged)
		}
		logger.Info("resuming the replay", "generation", res.Generation, "documents", idx.Len(), "acknowledged", p.Acknowledged)
	}

	proj, err := readmodel.NewProjector(readmodel.SoleWriter(repo, repo, idx), logger, opts.Now)
	if err != nil {
		return res, err
	}
	proj.KeepIndex(idx)
	runStart := time.Now()
	var lastProgress uint64
	progress := func(done, pending uint64) {
		lastProgress = done
		if opts.Progress == nil {
			return
		}
		el := time.Since(runStart)
		opts.Progress(ReplayProgress{Generation: res.Generation, Done: already + done, Total: already + done + pending,
			Elapsed: el, Rate: float64(done) / max(el.Seconds(), 1e-9)})
	}
	res.Events, err = eventstore.CatchUp(rctx, js, res.Consumer, opts.Batch, logger, proj.Project, progress)
	if err != nil {
		if cause := context.Cause(rctx); cause != nil && ctx.Err() == nil {
			err = cause
		}
		return res, fmt.Errorf("replay of generation %d stopped after %d events (rerun to resume): %w", res.Generation, lastProgress, err)
	}
	next := readmodel.Generation{Generation: res.Generation, Collection: res.Collection, Consumer: res.Consumer}
	if err := base.Activate(rctx, meta.Generation, owner, next, opts.Now()); err != nil {
		return res, fmt.Errorf("replay: activate generation %d: %w", res.Generation, err)
	}
	activated = true
	res.Documents = idx.Len()
	res.Duration = opts.Now().Sub(start)
	logger.Info("read model generation activated", "generation", res.Generation, "previous", meta.Generation,
		"collection", res.Collection, "consumer", res.Consumer, "events", res.Events, "durationMs", res.Duration.Milliseconds())
	return res, nil
}

// resumedEvents is how many events the consumer acknowledged before a
// resume, for the progress display: its acknowledgement floor in its own
// delivery sequence (which redeliveries inflate a little).
func resumedEvents(ctx context.Context, js jetstream.JetStream, name string, fallback uint64) uint64 {
	c, err := js.Consumer(ctx, events.StreamName, name)
	if err != nil {
		return fallback
	}
	info, err := c.Info(ctx)
	if err != nil {
		return fallback
	}
	return info.AckFloor.Consumer
}

// VerifyResult is what Verify compared.
type VerifyResult struct {
	Generation int
	Collection string
	// Through is the stream sequence the comparison is made at: the active
	// consumer's acknowledgement floor when the comparison started. Newest
	// is the stream's newest event then; Through < Newest means the
	// projector was behind and the events after Through were not verified.
	Through, Newest uint64
	Documents       int // stored documents compared
	Events          int // events folded
	Unapplied       int // events the fold could not apply (the projector parks them)
	Later           int // documents changed after Through while verifying: not compared
	Differences     []readmodel.Difference
}

// Verify compares every document of the active read-model generation with
// the fold of the event stream, at the stream sequence the active consumer
// had acknowledged when it started (Through): every event up to it is in the
// read model. A document whose Sequence is past Through changed while Verify
// ran and is left out (counted in Later); any other document must equal its
// fold exactly. It reads the stream once, in order, and the collection once.
func Verify(ctx context.Context, js jetstream.JetStream, base ReadModel, consumer0 string) (VerifyResult, error) {
	if consumer0 == "" {
		consumer0 = eventstore.ProjectorConsumer
	}
	var res VerifyResult
	meta, err := base.Active(ctx, consumer0)
	if err != nil {
		return res, err
	}
	res.Generation, res.Collection = meta.Generation, meta.Collection
	p, err := eventstore.Progress(ctx, js, meta.Consumer)
	if err != nil {
		return res, err
	}
	if !p.Exists {
		return res, fmt.Errorf("verify: the active generation's consumer %s does not exist", meta.Consumer)
	}
	res.Through = p.Acknowledged
	if stream, err := js.Stream(ctx, events.StreamName); err == nil {
		if last, err := stream.GetLastMsgForSubject(ctx, events.EventSubjectFilter); err == nil {
			res.Newest = last.Sequence
		}
	}
	stored := map[string]*readmodel.Document{}
	repo := base.WithCollection(meta.Collection)
	if err := repo.Each(ctx, func(d *readmodel.Document) {
		if d.Sequence > res.Through {
			res.Later++
			return
		}
		stored[d.ID] = d
	}); err != nil {
		return res, err
	}
	fold := readmodel.NewFold()
	if _, err := eventstore.FoldEvents(ctx, js, res.Through, fold.Add); err != nil {
		return res, fmt.Errorf("verify: fold the stream: %w", err)
	}
	folded := fold.Documents()
	// A connection the read model holds at a later sequence is absent from
	// stored but present in the fold; it is not missing.
	later := map[string]bool{}
	if res.Later > 0 {
		if err := repo.Each(ctx, func(d *readmodel.Document) {
			if _, ok := stored[d.ID]; !ok {
				later[d.ID] = true
			}
		}); err != nil {
			return res, err
		}
	}
	compare := make(map[string]*readmodel.Document, len(folded))
	for id, d := range folded {
		if !later[id] {
			compare[id] = d
		}
	}
	res.Documents, res.Events, res.Unapplied = len(stored), fold.Events, fold.Unapplied
	res.Differences = readmodel.Compare(stored, compare)
	return res, nil
}
