package httpapi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/readmodel"
)

// Discoverer runs the schema discovery command of a stored connection.
type Discoverer interface {
	Handle(ctx context.Context, cmd commands.DiscoverSchema) (commands.Discovery, error)
}

// maxDiscoveriesPerRequest bounds the discoveries one validate-schema runs at once.
const maxDiscoveriesPerRequest = 4

// DefaultSchemaMaxAge is how old a schema from the read model may be for
// validate-schema to trust it without discovering again.
const DefaultSchemaMaxAge = time.Hour

type columnResponse struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Nullable   bool   `json:"nullable"`
	PrimaryKey bool   `json:"primaryKey"`
}

// tableResponse is one table as Lerian's manager answers it (name, fields)
// with the registry's additions (columns, view).
type tableResponse struct {
	Name    string           `json:"name"`
	Fields  []string         `json:"fields"`
	Columns []columnResponse `json:"columns"`
	View    bool             `json:"view"`
}

type schemaResponse struct {
	ID           string          `json:"id"`
	ConfigName   string          `json:"configName"`
	Type         string          `json:"type"`
	DatabaseName string          `json:"databaseName"`
	Tables       []tableResponse `json:"tables"`
	// Sampled says that the fields come from a sample of documents (MongoDB).
	Sampled      bool   `json:"sampled,omitempty"`
	DiscoveredAt string `json:"discoveredAt"`
}

// knownSchema is a schema with what the answers need of its connection.
type knownSchema struct {
	id, configName, engine, databaseName string
	digest                               string
	sampled                              bool
	at                                   time.Time
	tables                               []domain.Table
}

func (k knownSchema) response() schemaResponse {
	r := schemaResponse{ID: k.id, ConfigName: k.configName, Type: k.engine, DatabaseName: k.databaseName,
		Tables: make([]tableResponse, 0, len(k.tables)), Sampled: k.sampled, DiscoveredAt: rfc3339(k.at)}
	for _, t := range k.tables {
		tr := tableResponse{Name: t.Name, View: t.View, Fields: make([]string, 0, len(t.Columns)), Columns: make([]columnResponse, 0, len(t.Columns))}
		for _, c := range t.Columns {
			tr.Fields = append(tr.Fields, c.Name)
			tr.Columns = append(tr.Columns, columnResponse{Name: c.Name, Type: c.Type, Nullable: c.Nullable, PrimaryKey: c.PrimaryKey})
		}
		r.Tables = append(r.Tables, tr)
	}
	return r
}

func fromDiscovery(d commands.Discovery) knownSchema {
	s := d.Connection.Spec()
	return knownSchema{id: d.Connection.ID(), configName: s.ConfigName, engine: string(s.Engine), databaseName: s.DatabaseName,
		digest: d.Digest, sampled: d.Schema.Sampled, at: d.At, tables: d.Schema.Tables}
}

func fromDocumentSchema(doc *readmodel.Document) knownSchema {
	k := knownSchema{id: doc.ID, configName: doc.ConfigName, engine: doc.Type, databaseName: doc.DatabaseName,
		digest: doc.Discovered.Digest, sampled: doc.Discovered.Sampled, at: doc.Discovered.At}
	for _, t := range doc.Discovered.Tables {
		dt := domain.Table{Name: t.Name, View: t.View, Columns: make([]domain.Column, 0, len(t.Columns))}
		for _, c := range t.Columns {
			dt.Columns = append(dt.Columns, domain.Column{Name: c.Name, Type: c.Type, Nullable: c.Nullable, PrimaryKey: c.PrimaryKey})
		}
		k.tables = append(k.tables, dt)
	}
	return k
}

// confirmations remembers when this process last found each connection's
// schema unchanged. Such a discovery records no event, so the read model's
// discoveredAt stays at the last change; without this memory, a schema that
// does not change would look stale forever and be discovered on every
// validation after SCHEMA_MAX_AGE.
type confirmations struct {
	mu sync.Mutex
	m  map[string]confirmation
}

type confirmation struct {
	digest string
	at     time.Time
}

func (c *confirmations) note(id, digest string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]confirmation{}
	}
	c.m[id] = confirmation{digest: digest, at: at}
}

// checkedAt is when the schema with this digest was last known to hold.
func (c *confirmations) checkedAt(id, digest string, recorded time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.m[id]; ok && k.digest == digest && k.at.After(recorded) {
		return k.at
	}
	return recorded
}

// discover runs a discovery and remembers its outcome; a database that
// could not be read is a *commands.DiscoveryFailedError.
func (a *API) discover(ctx context.Context, id string, scope domain.Scope, origin domain.Origin) (knownSchema, error) {
	d, err := a.Discover.Handle(ctx, commands.DiscoverSchema{ID: id, Scope: scope, Origin: origin})
	if err != nil {
		return knownSchema{}, err
	}
	if d.Probe.Status != domain.TestSucceeded {
		return knownSchema{}, &commands.DiscoveryFailedError{Reason: d.Probe.Reason, Message: d.Probe.Message}
	}
	if d.Recorded {
		a.Queries.NoteWrite(id, d.Connection.Version(), d.Sequence)
	}
	a.confirmed.note(id, d.Digest, d.At)
	return fromDiscovery(d), nil
}

// recordedSchema is the latest schema recorded for a connection, with the
// read side's consistency rules (read-your-writes, fold of the stream when
// the read model lags or is down). ok is false when none was ever recorded.
func (a *API) recordedSchema(ctx context.Context, id string, vis readmodel.Visibility) (k knownSchema, ok bool, err error) {
	doc, err := a.Queries.Get(ctx, id, vis)
	if err != nil || doc.Discovered == nil {
		return k, false, err
	}
	return fromDocumentSchema(doc), true, nil
}

// schema answers GET /{id}/schema from the latest recorded schema, and
// discovers now with ?refresh=true or when none was recorded yet.
func (a *API) schema(c *gin.Context) {
	id, err := pathID(c)
	if err != nil {
		a.fail(c, err)
		return
	}
	for name := range c.Request.URL.Query() {
		if name != "refresh" {
			a.fail(c, unknownParam(name))
			return
		}
	}
	refresh := false
	switch v := c.Query("refresh"); v {
	case "", "false":
	case "true":
		refresh = true
	default:
		a.fail(c, invalidParam("refresh", "must be true or false"))
		return
	}
	ctx := c.Request.Context()
	if !refresh {
		k, ok, err := a.recordedSchema(ctx, id, visibility(c))
		if err != nil {
			a.fail(c, err)
			return
		}
		if ok {
			c.JSON(http.StatusOK, k.response())
			return
		}
	}
	k, err := a.discover(ctx, id, scope(c), a.origin(c))
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, k.response())
}

// Kinds of a validate-schema error: what is missing.
const (
	missingConnection = "connection"
	missingTable      = "table"
	missingField      = "field"
	unreachable       = "unreachable"
)

// schemaError is one entry of a failed validate-schema, as Lerian's manager
// spells it: dataSourceId is the configName of the mapping.
type schemaError struct {
	DataSourceID string `json:"dataSourceId"`
	Table        string `json:"table,omitempty"`
	Field        string `json:"field,omitempty"`
	Type         string `json:"type"`
}

// SchemaMismatchError is a validate-schema whose mapping names connections,
// tables or fields that do not exist or could not be checked.
type SchemaMismatchError struct {
	Errors []schemaError
}

func (e *SchemaMismatchError) Error() string {
	return fmt.Sprintf("%d mapped items do not exist or could not be checked", len(e.Errors))
}

type validateRequest struct {
	MappedFields map[string]map[string][]string `json:"mappedFields"`
}

// validateSchema checks a report's mapping against the schemas of the
// connections it names: from the read model when the schema is younger
// than SchemaMaxAge, by discovering the stale and unknown ones (in parallel)
// otherwise. Names, tables and fields compare case-insensitively, because
// engines fold unquoted identifiers to one case or the other.
func (a *API) validateSchema(c *gin.Context) {
	var req validateRequest
	if err := readJSONBody(c.Writer, c.Request, &req); err != nil {
		a.fail(c, err)
		return
	}
	if len(req.MappedFields) == 0 {
		v := &domain.ValidationError{}
		v.Add("mappedFields", domain.ViolationMissing, "must map at least one configName to its tables and fields")
		a.fail(c, v)
		return
	}
	product, err := productScope(c.Request.Header)
	if err != nil {
		a.fail(c, err)
		return
	}
	ctx := c.Request.Context()

	names := slices.Sorted(maps.Keys(req.MappedFields))
	schemas := make([]*knownSchema, len(names))
	problems := make([]string, len(names)) // unreachable or unknown, per name
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		fatalErr error // the first error that fails the whole request
	)
	origin, sc, vis := a.origin(c), scope(c), visibility(c)
	// One mapping must not take every slot of the connection tester (its
	// other callers would get "busy"): it discovers a few at a time.
	slots := make(chan struct{}, maxDiscoveriesPerRequest)
	for i, name := range names {
		doc, err := a.byConfigName(ctx, vis, product, name)
		if errors.Is(err, readmodel.ErrNotFound) {
			problems[i] = missingConnection
			continue
		}
		if err != nil {
			a.fail(c, err)
			return
		}
		if doc.Discovered != nil && time.Since(a.confirmed.checkedAt(doc.ID, doc.Discovered.Digest, doc.Discovered.At)) < a.SchemaMaxAge {
			k := fromDocumentSchema(doc)
			schemas[i] = &k
			continue
		}
		wg.Add(1)
		go func(i int, doc *readmodel.Document) {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			k, err := a.discover(ctx, doc.ID, sc, origin)
			var (
				limited     *commands.RateLimitedError
				unavailable *domain.UnavailableError
			)
			switch {
			case err == nil:
				schemas[i] = &k
			case errors.As(err, &limited) && doc.Discovered != nil:
				k := fromDocumentSchema(doc) // discovered too often lately: the last schema is recent enough
				schemas[i] = &k
			case errors.As(err, &unavailable), errors.As(err, &limited), errors.Is(err, commands.ErrProbeBusy):
				// Nothing was attempted, or a part of the registry failed: the
				// answer is "retry", not a verdict on the mapping.
				mu.Lock()
				if fatalErr == nil {
					fatalErr = err
				}
				mu.Unlock()
			case errors.Is(err, domain.ErrNotFound): // deleted meanwhile
				problems[i] = missingConnection
			default:
				problems[i] = unreachable
			}
		}(i, doc)
	}
	wg.Wait()
	if fatalErr != nil {
		a.fail(c, fatalErr)
		return
	}
	var missing []schemaError
	for i, name := range names {
		if problems[i] != "" {
			missing = append(missing, schemaError{DataSourceID: name, Type: problems[i]})
			continue
		}
		missing = append(missing, checkMapping(name, req.MappedFields[name], schemas[i].tables)...)
	}
	if len(missing) > 0 {
		a.fail(c, &SchemaMismatchError{Errors: missing})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "success", "message": "Every mapped connection, table and field exists."})
}

// checkMapping lists the tables and fields of one connection's mapping that
// its schema lacks, tables in name order, fields in the mapping's order.
func checkMapping(name string, mapped map[string][]string, tables []domain.Table) []schemaError {
	var out []schemaError
	for _, table := range slices.Sorted(maps.Keys(mapped)) {
		i := slices.IndexFunc(tables, func(t domain.Table) bool { return strings.EqualFold(t.Name, table) })
		if i < 0 {
			out = append(out, schemaError{DataSourceID: name, Table: table, Type: missingTable})
			continue
		}
		for _, field := range mapped[table] {
			if !slices.ContainsFunc(tables[i].Columns, func(c domain.Column) bool { return strings.EqualFold(c.Name, field) }) {
				out = append(out, schemaError{DataSourceID: name, Table: table, Field: field, Type: missingField})
			}
		}
	}
	return out
}

// byConfigName finds the live connection with this config name (any case)
// of the caller's organization, within the product when one is given; the
// document carries its schema.
func (a *API) byConfigName(ctx context.Context, vis readmodel.Visibility, product, name string) (*readmodel.Document, error) {
	res, err := a.Queries.List(ctx, readmodel.ListQuery{Organization: vis.Organization, ProductName: product, ConfigNamePrefix: name,
		SortBy: readmodel.SortConfigName, Ascending: true, Page: 1, Limit: 1})
	if err != nil {
		return nil, err
	}
	// Sorted by lower-cased name, the name itself comes before every longer name it prefixes.
	if len(res.Items) == 0 || !strings.EqualFold(res.Items[0].ConfigName, name) || !vis.Allows(res.Items[0].Organization, res.Items[0].ProductName) {
		return nil, readmodel.ErrNotFound
	}
	doc := &res.Items[0]
	if doc.Discovered == nil {
		// A list page may leave the schema out: read the document itself.
		return a.Queries.Get(ctx, doc.ID, vis)
	}
	return doc, nil
}
