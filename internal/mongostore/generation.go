package mongostore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/connreg/registry/readmodel"
)

// MetaCollection holds one document, _id "active": which generation of the
// read model readers and the live projector use, and which one a replay is
// building.
const MetaCollection = "readmodel_meta"

const metaID = "active"

// Meta says which generation of the read model is active (see
// readmodel.Generation); it is kept in the one document of MetaCollection.
type Meta = readmodel.Generation

// ErrGenerationMoved is returned by a guarded change of the meta document
// that found another generation active, or another replay holding the lease.
var ErrGenerationMoved = readmodel.ErrGenerationMoved

// CollectionFor is the collection of generation gen.
func CollectionFor(gen int) string {
	if gen == 0 {
		return ConnectionsCollection
	}
	return ConnectionsCollection + "_g" + strconv.Itoa(gen)
}

func (r *Repository) meta() *mongo.Collection {
	return r.connections.Database().Collection(MetaCollection)
}

// Active returns the meta document, or generation 0 with consumer0 when
// there is none yet (a read model that never saw a replay).
func (r *Repository) Active(ctx context.Context, consumer0 string) (Meta, error) {
	var m Meta
	err := r.meta().FindOne(ctx, bson.D{{Key: "_id", Value: metaID}}).Decode(&m)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return Meta{Generation: 0, Collection: CollectionFor(0), Consumer: consumer0}, nil
	}
	if err != nil {
		return Meta{}, unavailable(fmt.Errorf("mongo: read %s: %w", MetaCollection, err))
	}
	return m, nil
}

// Lease makes owner the builder of generation pending, until until: it
// succeeds when generation active is still active and no other owner holds
// an unexpired lease (a crashed replay's lease expires; a renewal by the same
// owner always succeeds). It creates the meta document of generation 0
// (consumer0) when there is none.
func (r *Repository) Lease(ctx context.Context, consumer0 string, active, pending int, owner string, until, now time.Time) error {
	_, err := r.meta().InsertOne(ctx, bson.D{{Key: "_id", Value: metaID}, {Key: "generation", Value: 0},
		{Key: "collection", Value: CollectionFor(0)}, {Key: "consumer", Value: consumer0}})
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return unavailable(err)
	}
	res, err := r.meta().UpdateOne(ctx,
		bson.D{
			{Key: "_id", Value: metaID},
			{Key: "generation", Value: active},
			{Key: "$or", Value: bson.A{
				bson.D{{Key: "pendingOwner", Value: owner}},
				bson.D{{Key: "pendingOwner", Value: bson.D{{Key: "$exists", Value: false}}}},
				bson.D{{Key: "pendingUntil", Value: bson.D{{Key: "$lt", Value: now}}}},
			}},
		},
		bson.D{{Key: "$set", Value: bson.D{
			{Key: "pending", Value: pending}, {Key: "pendingOwner", Value: owner}, {Key: "pendingUntil", Value: until},
		}}})
	if err != nil {
		return unavailable(err)
	}
	if res.MatchedCount == 0 {
		return ErrGenerationMoved
	}
	return nil
}

// ReleaseLease gives up owner's lease and keeps Pending, so that the next
// replay resumes the generation at once instead of waiting for the lease to
// run out.
func (r *Repository) ReleaseLease(ctx context.Context, owner string) error {
	_, err := r.meta().UpdateOne(ctx, bson.D{{Key: "_id", Value: metaID}, {Key: "pendingOwner", Value: owner}},
		bson.D{{Key: "$unset", Value: bson.D{{Key: "pendingOwner", Value: ""}, {Key: "pendingUntil", Value: ""}}}})
	if err != nil {
		return unavailable(err)
	}
	return nil
}

// Activate makes next the active generation, only while generation from is
// active and owner holds the replay lease: the one atomic step at which
// readers and the live projector are told to switch. It clears the pending
// generation and the lease.
func (r *Repository) Activate(ctx context.Context, from int, owner string, next Meta, now time.Time) error {
	res, err := r.meta().UpdateOne(ctx,
		bson.D{{Key: "_id", Value: metaID}, {Key: "generation", Value: from}, {Key: "pendingOwner", Value: owner}},
		bson.D{
			{Key: "$set", Value: bson.D{
				{Key: "generation", Value: next.Generation}, {Key: "collection", Value: next.Collection},
				{Key: "consumer", Value: next.Consumer}, {Key: "switchedAt", Value: now},
			}},
			{Key: "$unset", Value: bson.D{{Key: "pending", Value: ""}, {Key: "pendingOwner", Value: ""}, {Key: "pendingUntil", Value: ""}}},
		})
	if err != nil {
		return unavailable(err)
	}
	if res.MatchedCount == 0 {
		return ErrGenerationMoved
	}
	return nil
}

// WithCollection returns a repository over another connections collection
// of the same database (a read-model generation), sharing this one's client,
// parked events and meta. Close only the repository Open returned.
func (r *Repository) WithCollection(name string) *Repository {
	c := *r
	c.connections = r.connections.Database().Collection(name)
	return &c
}

// Collection is the name of the connections collection this repository reads
// and writes.
func (r *Repository) Collection() string { return r.connections.Name() }

// EnsureIndexes creates the query indexes missing on this repository's
// collection: the same list, one index at a time, for every generation.
func (r *Repository) EnsureIndexes(ctx context.Context) error { return r.ensureIndexes(ctx) }

// Overwrite stores docs as they are, replacing whatever has their _id,
// unguarded, at most maxReplacesPerCall per bulk write. Only a writer that is alone on the collection and knows the
// documents are newest may use it: a replay building a generation nobody
// else writes yet, recovering from a batch that a crash left half applied.
func (r *Repository) Overwrite(ctx context.Context, docs []*readmodel.Document) error {
	if len(docs) == 0 {
		return nil
	}
	models := make([]mongo.WriteModel, 0, len(docs))
	for _, d := range docs {
		models = append(models, mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: d.ID}}).
			SetReplacement(d).SetUpsert(true))
	}
	for len(models) > 0 {
		n := min(len(models), maxReplacesPerCall)
		if _, err := r.connections.BulkWrite(ctx, models[:n], options.BulkWrite().SetOrdered(false)); err != nil {
			return unavailable(err)
		}
		models = models[n:]
	}
	return nil
}

// ReplaceDocument overwrites one document, unguarded: for tests and repair
// tools that need to put the read model into a given state.
func (r *Repository) ReplaceDocument(ctx context.Context, d *readmodel.Document) error {
	return r.Overwrite(ctx, []*readmodel.Document{d})
}

// Drop removes this repository's collection. Replay uses it on a generation
// that is neither active nor pending, never on the active one.
func (r *Repository) Drop(ctx context.Context) error {
	if err := r.connections.Drop(ctx); err != nil {
		return unavailable(fmt.Errorf("mongo: drop %s: %w", r.connections.Name(), err))
	}
	return nil
}
