package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/connreg/registry/readmodel"
)

// The generation record is the one row of readmodel_meta, id "active": which
// generation readers and the live projector use, and which one a replay is
// building (see readmodel.Generation).
const metaID = "active"

func millis(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func fromMillis(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

// Active returns the generation record, or generation 0 with consumer0 when
// there is none yet (a read model that never saw a replay).
func (r *Repository) Active(ctx context.Context, consumer0 string) (readmodel.Generation, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var (
		m              readmodel.Generation
		owner          sql.NullString
		until, switch_ sql.NullInt64
	)
	err := r.reader.QueryRowContext(ctx, `SELECT generation, collection, consumer, pending, pending_owner, pending_until, switched_at
		FROM readmodel_meta WHERE id = ?`, metaID).Scan(&m.Generation, &m.Collection, &m.Consumer, &m.Pending, &owner, &until, &switch_)
	if errors.Is(err, sql.ErrNoRows) {
		return readmodel.Generation{Generation: 0, Collection: CollectionFor(0), Consumer: consumer0}, nil
	}
	if err != nil {
		return m, unavailable(fmt.Errorf("sqlite: read readmodel_meta: %w", err))
	}
	m.PendingOwner, m.PendingUntil, m.SwitchedAt = owner.String, fromMillis(until), fromMillis(switch_)
	return m, nil
}

// guarded runs one guarded statement of the generation record and returns
// ErrGenerationMoved when its guard matched nothing.
func (r *Repository) guarded(ctx context.Context, stmt string, args ...any) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	res, err := r.writer.ExecContext(ctx, stmt, args...)
	if err != nil {
		return unavailable(err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return unavailable(err)
	} else if n == 0 {
		return readmodel.ErrGenerationMoved
	}
	return nil
}

// Lease makes owner the builder of generation pending, until until: it
// succeeds when generation active is still active and no other owner holds
// an unexpired lease (a crashed replay's lease expires; a renewal by the same
// owner always succeeds). It creates the record of generation 0 (consumer0)
// when there is none.
func (r *Repository) Lease(ctx context.Context, consumer0 string, active, pending int, owner string, until, now time.Time) error {
	ictx, cancel := context.WithTimeout(ctx, r.timeout)
	_, err := r.writer.ExecContext(ictx, `INSERT OR IGNORE INTO readmodel_meta (id, generation, collection, consumer) VALUES (?, 0, ?, ?)`,
		metaID, CollectionFor(0), consumer0)
	cancel()
	if err != nil {
		return unavailable(err)
	}
	return r.guarded(ctx, `UPDATE readmodel_meta SET pending = ?, pending_owner = ?, pending_until = ?
		WHERE id = ? AND generation = ? AND (pending_owner = ? OR pending_owner IS NULL OR pending_until < ?)`,
		pending, owner, until.UnixMilli(), metaID, active, owner, now.UnixMilli())
}

// ReleaseLease gives up owner's lease and keeps Pending, so that the next
// replay resumes the generation at once instead of waiting for the lease to
// run out.
func (r *Repository) ReleaseLease(ctx context.Context, owner string) error {
	err := r.guarded(ctx, `UPDATE readmodel_meta SET pending_owner = NULL, pending_until = NULL WHERE id = ? AND pending_owner = ?`, metaID, owner)
	if errors.Is(err, readmodel.ErrGenerationMoved) {
		return nil
	}
	return err
}

// Activate makes next the active generation, only while generation from is
// active and owner holds the replay lease: the one atomic step at which
// readers and the live projector are told to switch. It clears the pending
// generation and the lease.
func (r *Repository) Activate(ctx context.Context, from int, owner string, next readmodel.Generation, now time.Time) error {
	return r.guarded(ctx, `UPDATE readmodel_meta SET generation = ?, collection = ?, consumer = ?, switched_at = ?,
		pending = 0, pending_owner = NULL, pending_until = NULL WHERE id = ? AND generation = ? AND pending_owner = ?`,
		next.Generation, next.Collection, next.Consumer, now.UnixMilli(), metaID, from, owner)
}
