package commands

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/connreg/registry/domain"
)

// Rewrapper is the sealer as a key rotation sees it. KeyVersion is the
// sealer's newest key version; Rewrap re-encrypts a sealed secret, bound to
// the connection id, under that version inside the sealer, so the plaintext
// never reaches this process. Like Sealer, it reports an outage as a
// *domain.UnavailableError and never puts a secret in an error.
type Rewrapper interface {
	KeyVersion(ctx context.Context) (int, error)
	Rewrap(ctx context.Context, binding string, s domain.SealedSecret) (domain.SealedSecret, error)
}

// ConnectionLister lists the id of every connection the event store holds,
// deleted ones included, in a stable order.
type ConnectionLister interface {
	AggregateIDs(ctx context.Context) ([]string, error)
}

// ResealDeps are the reseal handler's collaborators; all but Workers are
// required.
type ResealDeps struct {
	IDs     ConnectionLister
	History History
	Store   EventStore
	Sealer  Rewrapper
	// SealedVersion returns the key version that sealed a secret (for Vault,
	// N of "vault:vN:"); an error means the secret is not the sealer's, and
	// the connection is reported as failed rather than guessed about.
	SealedVersion func(domain.SealedSecret) (int, error)
	NewID         func() string
	Now           func() time.Time
	// Workers is how many connections are resealed at once (default 4);
	// concurrent rewraps are coalesced by the Vault sealer into batches.
	Workers int
}

// ResealCredentials asks to re-seal every stored credential under the
// sealer's newest key version. Progress, when set, is called once per
// connection examined, never concurrently.
type ResealCredentials struct {
	Origin   domain.Origin // At is set by the handler's clock
	Progress func(ResealProgress)
	// DryRun examines every connection and reports which are stale without
	// asking the sealer to rewrap anything or appending any event.
	DryRun bool
}

// ResealOutcome is what happened to one connection.
type ResealOutcome string

// Outcomes of one connection in a reseal run.
const (
	ResealResealed ResealOutcome = "resealed" // one credentials-resealed event appended
	ResealCurrent  ResealOutcome = "current"  // every secret already at the newest key version: skipped
	ResealDeleted  ResealOutcome = "deleted"  // a retired connection: skipped
	ResealFailed   ResealOutcome = "failed"   // nothing appended; Err says why
	ResealStale    ResealOutcome = "stale"    // a dry run found a secret below the newest key version
)

// ResealProgress reports one connection and the counts so far.
type ResealProgress struct {
	ID      string
	Outcome ResealOutcome
	Err     error // set when Outcome is ResealFailed; it never holds a secret
	Report  ResealReport
}

// ResealReport counts a run. Examined = Resealed + Stale + Skipped + Failed
// (Stale only in a dry run).
// Total is the number of connections listed at the start of the run.
type ResealReport struct {
	KeyVersion int
	Total      int
	Examined   int
	Resealed   int
	Stale      int
	Skipped    int
	Failed     int
}

// ResealHandler re-seals the credentials of every live connection whose
// password or SSL key is not sealed with the newest key version, appending
// one connection.credentials-resealed.v1 event per connection it changes.
//
// It is resumable and safe to run twice: a connection whose secrets are all
// current is skipped without an event, so a run that stopped halfway (crash,
// cancellation, outage) continues, when started again, with the connections
// it had not reached. Writes use the connection's expected version, so the
// API may keep serving during a run: a connection changed meanwhile is
// reloaded and judged again (at most MaxConflictRetries times).
type ResealHandler struct {
	ResealDeps
}

// NewResealHandler wires the handler.
func NewResealHandler(d ResealDeps) (*ResealHandler, error) {
	if d.IDs == nil || d.History == nil || d.Store == nil || d.Sealer == nil || d.SealedVersion == nil || d.NewID == nil || d.Now == nil {
		return nil, errors.New("commands: NewResealHandler needs a lister, a history, a store, a rewrapper, a version reader, an id generator and a clock")
	}
	if d.Workers <= 0 {
		d.Workers = 4
	}
	return &ResealHandler{ResealDeps: d}, nil
}

// Handle runs the rotation over every connection. A connection that fails
// is counted and the run goes on; the returned error is set only when the
// run stopped before examining every connection: the context ended, the
// list could not be read, or the event store or the sealer became
// unavailable (a *domain.UnavailableError). Either way the report counts
// what was done, and running again finishes the job.
func (h *ResealHandler) Handle(ctx context.Context, cmd ResealCredentials) (ResealReport, error) {
	var report ResealReport
	latest, err := h.Sealer.KeyVersion(ctx)
	if err != nil {
		return report, fmt.Errorf("reseal: newest key version: %w", err)
	}
	report.KeyVersion = latest
	ids, err := h.IDs.AggregateIDs(ctx)
	if err != nil {
		return report, fmt.Errorf("reseal: list connections: %w", err)
	}
	report.Total = len(ids)

	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var mu sync.Mutex // guards report and serialises Progress
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(h.Workers, max(len(ids), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				if ctx.Err() != nil {
					return // the feeder may still hand out one id after a stop
				}
				outcome, err := h.resealOne(ctx, id, latest, cmd.Origin, cmd.DryRun)
				if ctx.Err() != nil && err != nil {
					return // stopped: this connection was not judged
				}
				if domain.IsUnavailable(err) {
					stop(fmt.Errorf("reseal: stopped at connection %s: %w", id, err))
				}
				mu.Lock()
				report.Examined++
				switch outcome {
				case ResealResealed:
					report.Resealed++
				case ResealStale:
					report.Stale++
				case ResealFailed:
					report.Failed++
				default:
					report.Skipped++
				}
				if cmd.Progress != nil {
					cmd.Progress(ResealProgress{ID: id, Outcome: outcome, Err: err, Report: report})
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, id := range ids {
		select {
		case work <- id:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if ctx.Err() != nil && report.Examined < report.Total {
		return report, context.Cause(ctx)
	}
	return report, nil
}

// resealOne brings one connection to the newest key version. Rewrapped
// ciphertexts are kept across conflict retries, so a retry asks the sealer
// only for secrets that changed in between.
func (h *ResealHandler) resealOne(ctx context.Context, id string, latest int, origin domain.Origin, dryRun bool) (ResealOutcome, error) {
	rewrapped := map[string]domain.SealedSecret{} // old ciphertext -> new secret
	for attempt := 0; ; attempt++ {
		evs, _, err := h.History.Load(ctx, id)
		if err != nil {
			return ResealFailed, fmt.Errorf("load %s: %w", id, err)
		}
		conn, err := domain.Rebuild(evs)
		if err != nil {
			return ResealFailed, fmt.Errorf("rebuild %s: %w", id, err)
		}
		if conn.Deleted() {
			return ResealDeleted, nil
		}
		creds := conn.Credentials()
		stale := false
		for _, s := range []*domain.SealedSecret{&creds.Password, &creds.SSLKey} {
			if s.IsZero() {
				continue
			}
			v, err := h.SealedVersion(*s)
			if err != nil {
				return ResealFailed, fmt.Errorf("connection %s: %w", id, err)
			}
			if v >= latest {
				continue
			}
			if dryRun {
				return ResealStale, nil
			}
			stale = true
			next, ok := rewrapped[s.Ciphertext]
			if !ok {
				if next, err = h.Sealer.Rewrap(ctx, id, *s); err != nil {
					return ResealFailed, fmt.Errorf("rewrap a secret of %s: %w", id, err)
				}
				if nv, err := h.SealedVersion(next); err != nil || nv < latest {
					return ResealFailed, fmt.Errorf("rewrap a secret of %s: the sealer answered a ciphertext below key version %d", id, latest)
				}
				rewrapped[s.Ciphertext] = next
			}
			*s = next
		}
		if !stale {
			return ResealCurrent, nil
		}
		o := origin
		o.At = h.Now()
		changed, err := conn.Reseal(creds, o)
		if err != nil {
			return ResealFailed, fmt.Errorf("connection %s: %w", id, err)
		}
		if !changed {
			return ResealCurrent, nil
		}
		_, err = h.Store.Append(ctx, Append{AggregateID: id, Organization: conn.Organization(), ExpectedVersion: conn.PendingFrom(), Events: stamp(conn, h.NewID)})
		if retry, err := afterConflict(err, nil, attempt); retry {
			continue
		} else if err != nil {
			return ResealFailed, fmt.Errorf("append reseal of %s: %w", id, err)
		}
		return ResealResealed, nil
	}
}
