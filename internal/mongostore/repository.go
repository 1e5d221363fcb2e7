// Package mongo keeps the read model in MongoDB (or a server speaking its
// wire protocol, such as FerretDB): the projector's writes and the queries.
package mongostore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
	"github.com/connreg/registry/readmodel"
)

// Collection names.
const (
	ConnectionsCollection = "connections"
	ParkedCollection      = "parked_events"
)

// Repository is the read model in one MongoDB database.
type Repository struct {
	client      *mongo.Client
	connections *mongo.Collection
	parked      *mongo.Collection
	timeout     time.Duration
	ferret      bool           // the server is FerretDB: see ensureIndexes
	registry    *bson.Registry // the client's, for documents encoded before a write (schema.go)
}

// Open connects, checks the server answers and creates the missing indexes.
func Open(ctx context.Context, uri, database string, timeout time.Duration) (*Repository, error) {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	reg := registry()
	// The client-wide timeout also makes the driver send maxTimeMS, derived
	// from what is left of it, with every operation: the server abandons
	// work the client stopped waiting for instead of piling it up.
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetTimeout(timeout).
		SetServerSelectionTimeout(timeout).SetMaxPoolSize(64).SetRegistry(reg))
	if err != nil {
		return nil, fmt.Errorf("mongo: connect: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 3*timeout)
	defer cancel()
	if err := client.Ping(pingCtx, nil); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, domain.Unavailable(domain.DependencyReadModel, fmt.Errorf("mongo: ping: %w", err))
	}
	db := client.Database(database)
	r := &Repository{
		client:      client,
		connections: db.Collection(ConnectionsCollection),
		parked:      db.Collection(ParkedCollection),
		timeout:     timeout,
		registry:    reg,
	}
	var info bson.M
	if err := db.RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err == nil {
		_, r.ferret = info["ferretdbVersion"]
	}
	if err := r.ensureIndexes(ctx); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, err
	}
	return r, nil
}

// Close disconnects.
func (r *Repository) Close(ctx context.Context) error { return r.client.Disconnect(ctx) }

// indexes back the queries. They are created one at a time and only when
// missing: FerretDB panics when one createIndexes call names several indexes
// that already exist.
var indexes = []struct {
	name string
	keys bson.D
}{
	// Every list is of one product of one organization: the indexes lead
	// with both, then the filter and the sort.
	{"org_product_created", bson.D{{Key: "organization", Value: 1}, {Key: "productName", Value: 1}, {Key: "deleted", Value: 1}, {Key: "createdAt", Value: -1}, {Key: "_id", Value: -1}}},
	{"org_product_updated", bson.D{{Key: "organization", Value: 1}, {Key: "productName", Value: 1}, {Key: "deleted", Value: 1}, {Key: "updatedAt", Value: -1}, {Key: "_id", Value: -1}}},
	{"org_product_name", bson.D{{Key: "organization", Value: 1}, {Key: "productName", Value: 1}, {Key: "deleted", Value: 1}, {Key: "configNameKey", Value: 1}, {Key: "_id", Value: 1}}},
	{"org_product_type_created", bson.D{{Key: "organization", Value: 1}, {Key: "productName", Value: 1}, {Key: "type", Value: 1}, {Key: "deleted", Value: 1}, {Key: "createdAt", Value: -1}}},
	{"org_product_host_created", bson.D{{Key: "organization", Value: 1}, {Key: "productName", Value: 1}, {Key: "host", Value: 1}, {Key: "deleted", Value: 1}, {Key: "createdAt", Value: -1}}},
	{"org_product_database_created", bson.D{{Key: "organization", Value: 1}, {Key: "productName", Value: 1}, {Key: "databaseName", Value: 1}, {Key: "deleted", Value: 1}, {Key: "createdAt", Value: -1}}},
}

func (r *Repository) ensureIndexes(ctx context.Context) error {
	if r.ferret {
		// FerretDB 1.24 answers every query but one by _id with a scan and
		// never uses a secondary index, yet computes each index on every
		// insert (about a fifth of the embedded stack's CPU under load):
		// they are created on MongoDB only.
		return nil
	}
	specs, err := r.connections.Indexes().ListSpecifications(ctx)
	if err != nil {
		return domain.Unavailable(domain.DependencyReadModel, fmt.Errorf("mongo: list indexes: %w", err))
	}
	have := map[string]bool{}
	for _, s := range specs {
		have[s.Name] = true
	}
	for _, ix := range indexes {
		if have[ix.name] {
			continue
		}
		model := mongo.IndexModel{Keys: ix.keys, Options: options.Index().SetName(ix.name)}
		if _, err := r.connections.Indexes().CreateOne(ctx, model); err != nil {
			return fmt.Errorf("mongo: create index %s: %w", ix.name, err)
		}
	}
	return nil
}

func unavailable(err error) error {
	return domain.Unavailable(domain.DependencyReadModel, err)
}

// Documents implements readmodel.Store. It looks each id up on its own, a
// few at a time: FerretDB scans the whole collection and decodes every
// document for $in, and only filters in SQL for _id equality.
func (r *Repository) Documents(ctx context.Context, ids []string) (map[string]*readmodel.Document, error) {
	out := make(map[string]*readmodel.Document, len(ids))
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, 8)
	)
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var d readmodel.Document
			err := r.connections.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, mongo.ErrNoDocuments):
			case err != nil:
				if firstErr == nil {
					firstErr = unavailable(err)
				}
			default:
				out[id] = &d
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// maxReplacesPerCall bounds the guarded replaces of one bulk write: FerretDB
// 1.24 on SQLite keeps a pooled SQL connection open per update statement
// until the command ends, and a command of about 100 updates exhausts its
// pool and hangs.
const maxReplacesPerCall = 48

// Write implements readmodel.Store with unordered bulk writes: one of inserts
// for the new documents, and replaces guarded by the previous version for
// the others, at most maxReplacesPerCall per call. A document the server (or
// the BSON encoder) refuses for good does not fail the others: they are
// written, and the refused ones come back in a *readmodel.RefusedError.
func (r *Repository) Write(ctx context.Context, writes []readmodel.Write) error {
	var (
		inserts, replaces     []mongo.WriteModel
		insertIDs, replaceIDs []string
		replaceDocs           []replaceOne
		refused               = map[string]string{}
	)
	for _, w := range writes {
		// Encoded here, one document at a time, so that one the encoder
		// refuses (a NUL in a key) does not fail the whole bulk write.
		raw, err := r.marshal(w.Doc)
		if err != nil {
			refused[w.Doc.ID] = "cannot encode the document: " + err.Error()
			continue
		}
		if w.Previous == 0 {
			inserts = append(inserts, mongo.NewInsertOneModel().SetDocument(bson.Raw(raw)))
			insertIDs = append(insertIDs, w.Doc.ID)
			continue
		}
		replaces = append(replaces, mongo.NewReplaceOneModel().
			SetFilter(bson.D{{Key: "_id", Value: w.Doc.ID}, {Key: "version", Value: w.Previous}}).
			SetReplacement(bson.Raw(raw)))
		replaceIDs = append(replaceIDs, w.Doc.ID)
		replaceDocs = append(replaceDocs, replaceOne{w, bson.Raw(raw)})
	}
	conflict := false
	if len(inserts) > 0 {
		_, err := r.connections.BulkWrite(ctx, inserts, options.BulkWrite().SetOrdered(false))
		c, err := sortWriteErrors(err, insertIDs, refused)
		if err != nil {
			return unavailable(err)
		}
		conflict = conflict || c
	}
	for len(replaces) > 0 {
		n := min(len(replaces), maxReplacesPerCall)
		res, err := r.connections.BulkWrite(ctx, replaces[:n], options.BulkWrite().SetOrdered(false))
		failed := 0
		var bwe mongo.BulkWriteException
		if errors.As(err, &bwe) {
			failed = len(bwe.WriteErrors)
		}
		before := len(refused)
		c, err := sortWriteErrors(err, replaceIDs[:n], refused)
		if err != nil {
			return unavailable(err)
		}
		switch {
		case len(refused) > before:
			// FerretDB stops an update command at its first failed
			// statement even when unordered: which of the others were
			// applied is unknown, so they are written again one by one.
			c, err := r.replaceEach(ctx, replaceDocs[:n], refused)
			if err != nil {
				return err
			}
			conflict = conflict || c
		case c || res.MatchedCount < int64(n-failed):
			conflict = true
		}
		replaces, replaceIDs, replaceDocs = replaces[n:], replaceIDs[n:], replaceDocs[n:]
	}
	var out []error
	if conflict {
		out = append(out, readmodel.ErrConflict)
	}
	if len(refused) > 0 {
		out = append(out, &readmodel.RefusedError{Reasons: refused})
	}
	return errors.Join(out...)
}

type replaceOne struct {
	w   readmodel.Write
	raw bson.Raw
}

// replaceEach writes each guarded replace on its own, skipping the refused
// ones, and accepts a document already at its new version (written by the
// bulk write that failed part way) as written.
func (r *Repository) replaceEach(ctx context.Context, docs []replaceOne, refused map[string]string) (conflict bool, _ error) {
	for _, d := range docs {
		if _, ok := refused[d.w.Doc.ID]; ok {
			continue
		}
		filter := bson.D{{Key: "_id", Value: d.w.Doc.ID},
			{Key: "version", Value: bson.D{{Key: "$in", Value: bson.A{d.w.Previous, d.w.Doc.Version}}}}}
		res, err := r.connections.ReplaceOne(ctx, filter, d.raw)
		var we mongo.WriteException
		switch {
		case errors.As(err, &we) && len(we.WriteErrors) > 0 && we.WriteConcernError == nil &&
			(permanentCodes[we.WriteErrors[0].Code] || strings.Contains(we.WriteErrors[0].Message, "invalid key")):
			refused[d.w.Doc.ID] = fmt.Sprintf("code %d: %s", we.WriteErrors[0].Code, we.WriteErrors[0].Message)
		case err != nil:
			return false, unavailable(err)
		case res.MatchedCount == 0:
			conflict = true
		}
	}
	return conflict, nil
}

// Server error codes that refuse one document for what it holds: writing it
// again can only fail again (MongoDB's error_codes.yml).
var permanentCodes = map[int]bool{
	2:     true, // BadValue: FerretDB's "invalid key" ('$' prefix, '.', invalid UTF-8)
	9:     true, // FailedToParse
	14:    true, // TypeMismatch
	52:    true, // DollarPrefixedFieldName
	55:    true, // InvalidDBRef
	56:    true, // EmptyFieldName
	57:    true, // DottedFieldName
	121:   true, // DocumentValidationFailure
	10334: true, // BSONObjectTooLarge
	17419: true, // document too large
}

// sortWriteErrors reads the result of one unordered bulk write whose models
// are the documents ids, in order: a duplicate key is a conflict (another
// projector inserted first), a permanent per-document error is recorded in
// refused, and anything else (a write concern error, a network error, a
// command error) is returned, for the whole batch to be retried.
func sortWriteErrors(err error, ids []string, refused map[string]string) (conflict bool, _ error) {
	if err == nil {
		return false, nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return false, err
	}
	for _, we := range bwe.WriteErrors {
		switch {
		case we.Index < 0 || we.Index >= len(ids):
			return false, err
		case mongo.IsDuplicateKeyError(we):
			conflict = true
		case permanentCodes[we.Code] || strings.Contains(we.Message, "invalid key"):
			refused[ids[we.Index]] = fmt.Sprintf("code %d: %s", we.Code, we.Message)
		default:
			return false, err
		}
	}
	return conflict, nil
}

type parkedDoc struct {
	Sequence uint64    `bson:"_id"`
	Subject  string    `bson:"subject"`
	Data     string    `bson:"data"`
	Reason   string    `bson:"reason"`
	ParkedAt time.Time `bson:"parkedAt"`
}

// Park implements readmodel.Store. Parking the same event twice keeps one.
func (r *Repository) Park(ctx context.Context, parked []readmodel.Parked) error {
	docs := make([]any, 0, len(parked))
	for _, p := range parked {
		docs = append(docs, parkedDoc{Sequence: p.Sequence, Subject: p.Subject, Data: string(p.Data), Reason: p.Reason, ParkedAt: p.ParkedAt})
	}
	_, err := r.parked.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return unavailable(err)
	}
	return nil
}

// ParkedEvent is a parked event as operators see it.
type ParkedEvent = parkedDoc

// Parked lists parked events, oldest first.
func (r *Repository) Parked(ctx context.Context) ([]ParkedEvent, error) {
	cur, err := r.parked.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, unavailable(err)
	}
	var out []ParkedEvent
	if err := cur.All(ctx, &out); err != nil {
		return nil, unavailable(err)
	}
	return out, nil
}

// ParkedCount is the number of parked events.
func (r *Repository) ParkedCount(ctx context.Context) (int64, error) {
	n, err := r.parked.CountDocuments(ctx, bson.D{})
	if err != nil {
		return 0, unavailable(err)
	}
	return n, nil
}

// Get returns the document of a live connection.
func (r *Repository) Get(ctx context.Context, id string) (*readmodel.Document, error) {
	var d readmodel.Document
	err := r.connections.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, readmodel.ErrNotFound
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return &d, nil
}

// List returns one page of live connections.
func (r *Repository) List(ctx context.Context, q readmodel.ListQuery) (readmodel.ListResult, error) {
	filter := listFilter(q)
	total, err := r.connections.CountDocuments(ctx, filter)
	if err != nil {
		return readmodel.ListResult{}, unavailable(err)
	}
	field := sortField(q.SortBy)
	dir := -1
	if q.Ascending {
		dir = 1
	}
	opts := options.Find().SetSort(bson.D{{Key: field, Value: dir}, {Key: "_id", Value: dir}}).SetLimit(int64(q.Limit)).
		SetProjection(bson.D{{Key: "discovered", Value: 0}}) // a schema can weigh more than the rest of a page; Get reads it
	if q.After != nil {
		filter = append(filter, keyset(field, dir, *q.After))
	} else if q.Page > 1 {
		opts.SetSkip(int64((q.Page - 1) * q.Limit))
	}
	cur, err := r.connections.Find(ctx, filter, opts)
	if err != nil {
		return readmodel.ListResult{}, unavailable(err)
	}
	items := []readmodel.Document{}
	if err := cur.All(ctx, &items); err != nil {
		return readmodel.ListResult{}, unavailable(err)
	}
	return readmodel.ListResult{Items: items, Total: total}, nil
}

func sortField(sortBy string) string {
	switch sortBy {
	case readmodel.SortUpdatedAt:
		return "updatedAt"
	case readmodel.SortConfigName:
		return "configNameKey"
	}
	return "createdAt"
}

func listFilter(q readmodel.ListQuery) bson.D {
	f := bson.D{{Key: "deleted", Value: false}}
	eq := func(k, v string) {
		if v != "" {
			f = append(f, bson.E{Key: k, Value: v})
		}
	}
	eq("organization", q.Organization)
	eq("productName", q.ProductName)
	eq("type", q.Type)
	eq("host", q.Host)
	eq("databaseName", q.DatabaseName)
	if p := strings.ToLower(q.ConfigNamePrefix); p != "" {
		f = append(f, bson.E{Key: "configNameKey", Value: bson.D{{Key: "$gte", Value: p}, {Key: "$lt", Value: p + "\uffff"}}})
	}
	keys := make([]string, 0, len(q.Metadata))
	for k := range q.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f = append(f, bson.E{Key: "metadata." + k, Value: q.Metadata[k]})
	}
	var created bson.D
	if q.CreatedFrom != nil {
		created = append(created, bson.E{Key: "$gte", Value: *q.CreatedFrom})
	}
	if q.CreatedBefore != nil {
		created = append(created, bson.E{Key: "$lt", Value: *q.CreatedBefore})
	}
	if created != nil {
		f = append(f, bson.E{Key: "createdAt", Value: created})
	}
	switch q.Health {
	case "":
	case events.HealthUnknown: // no health status yet ($nin also matches a missing field)
		f = append(f, bson.E{Key: "health.status", Value: bson.D{{Key: "$nin", Value: bson.A{events.HealthHealthy, events.HealthFailing}}}})
	default:
		f = append(f, bson.E{Key: "health.status", Value: q.Health})
	}
	return f
}

// keyset selects what sorts after the cursor: a later sort value, or the
// same value and a later id.
func keyset(field string, dir int, c readmodel.Cursor) bson.E {
	op := "$lt"
	if dir > 0 {
		op = "$gt"
	}
	var v any = c.Time
	if field == "configNameKey" {
		v = c.Name
	}
	return bson.E{Key: "$or", Value: bson.A{
		bson.D{{Key: field, Value: bson.D{{Key: op, Value: v}}}},
		bson.D{{Key: field, Value: v}, {Key: "_id", Value: bson.D{{Key: op, Value: c.ID}}}},
	}}
}

// Each calls fn with every document, in no order: how an in-memory index is
// loaded at start.
func (r *Repository) Each(ctx context.Context, fn func(*readmodel.Document)) error {
	cur, err := r.connections.Find(ctx, bson.D{}, options.Find().SetBatchSize(1000))
	if err != nil {
		return unavailable(err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var d readmodel.Document
		if err := cur.Decode(&d); err != nil {
			return err
		}
		fn(&d)
	}
	if err := cur.Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// IndexNames lists the indexes of the connections collection.
func (r *Repository) IndexNames(ctx context.Context) ([]string, error) {
	specs, err := r.connections.Indexes().ListSpecifications(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		names = append(names, s.Name)
	}
	return names, nil
}
