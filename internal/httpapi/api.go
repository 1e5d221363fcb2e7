// Package httpapi is the REST adapter: it turns requests into commands and
// queries, and errors into answers (in errors.go, the only place that maps
// errors to HTTP).
package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
	"github.com/connreg/registry/readmodel"
)

// Creator runs the create command.
type Creator interface {
	Handle(ctx context.Context, cmd commands.CreateConnection) (commands.Result, error)
}

// Reader answers queries from the read model.
type Reader interface {
	Get(ctx context.Context, id string) (*readmodel.Document, error)
	List(ctx context.Context, q readmodel.ListQuery) (readmodel.ListResult, error)
}

// History reads a connection's events from the system of record; the API
// folds them when the read model has not caught up with a write yet.
type History interface {
	Load(ctx context.Context, id string) ([]events.Event, uint64, error)
}

// Projection tells when the read model reflects a stream sequence.
type Projection interface {
	WaitFor(ctx context.Context, seq uint64) error
}

// Deps are the API's collaborators; all are required.
type Deps struct {
	Create     Creator
	Update     Updater
	Delete     Deleter
	Test       Tester
	Prober     commands.Prober
	Reader     Reader
	History    History
	Projection Projection
	Logger     *slog.Logger
	// ConsistencyWait bounds how long a list waits for the projection of
	// this process's latest write (read-your-writes); default 2s.
	ConsistencyWait time.Duration
}

// API serves /v1/management/connections.
type API struct {
	Deps
	recent    *recentWrites
	lastWrite atomic.Uint64
}

// New builds the API.
func New(d Deps) (*API, error) {
	if d.Create == nil || d.Update == nil || d.Delete == nil || d.Test == nil || d.Prober == nil || d.Reader == nil || d.History == nil || d.Projection == nil || d.Logger == nil {
		return nil, errors.New("httpapi: New needs create, update, delete and test handlers, a prober, a reader, a history, a projection and a logger")
	}
	if d.ConsistencyWait <= 0 {
		d.ConsistencyWait = 2 * time.Second
	}
	return &API{Deps: d, recent: newRecentWrites(5 * time.Minute)}, nil
}

// Handler returns the HTTP handler with every route.
func (a *API) Handler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.Use(withRequestID, accessLog(a.Logger), recoverer(a.Logger))
	r.NoRoute(func(c *gin.Context) {
		c.AbortWithStatusJSON(http.StatusNotFound, ErrorBody{Code: CodeNotFound, Title: "Not found", Message: "No such route."})
	})
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	g := r.Group("/v1/management/connections")
	g.POST("", a.create)
	g.POST("/test", a.testUnsaved)
	g.POST("/:id/test", a.testStored)
	g.GET("", a.list)
	g.GET("/:id", a.get)
	g.GET("/:id/history", a.history)
	g.PATCH("/:id", a.update)
	g.DELETE("/:id", a.remove)
	return r
}

func (a *API) fail(c *gin.Context, err error) { respondError(c, a.Logger, err) }

func (a *API) origin(c *gin.Context) domain.Origin {
	// Authentication is not switched on yet: every caller is anonymous.
	correlation := c.GetHeader("X-Correlation-Id")
	if !safeRequestID.MatchString(correlation) {
		correlation = "" // it would be kept forever in the event: only a safe token is
	}
	return domain.Origin{Actor: "anonymous", RequestID: requestID(c), CorrelationID: correlation}
}

// createInput decodes and checks a create body and its headers, reporting
// every refused field at once.
func createInput(c *gin.Context) (domain.SpecInput, error) {
	var req createRequest
	violations := &domain.ValidationError{}
	if err := readJSONBody(c.Writer, c.Request, &req); err != nil && !errors.As(err, &violations) {
		return domain.SpecInput{}, err
	}
	in, more := req.specInput(c.GetHeader("X-Product-Name"))
	violations.Merge(more)
	if len(violations.Fields) > 0 {
		_, _, err := domain.ParseSpec(in)
		var rest *domain.ValidationError
		if errors.As(err, &rest) {
			violations.Merge(rest)
		}
		return domain.SpecInput{}, violations
	}
	return in, nil
}

func (a *API) create(c *gin.Context) {
	in, err := createInput(c)
	if err != nil {
		a.fail(c, err)
		return
	}
	key := c.GetHeader("Idempotency-Key")
	if len(key) > 255 {
		a.fail(c, badRequest(CodeInvalidHeader, "Invalid header", "Idempotency-Key must be at most 255 characters long.",
			map[string]string{"Idempotency-Key": "must be at most 255 characters long"}))
		return
	}
	created, err := a.Create.Handle(c.Request.Context(), commands.CreateConnection{Input: in, Origin: a.origin(c), IdempotencyKey: key})
	if err != nil {
		a.fail(c, err)
		return
	}
	if created.Changed {
		a.noteWrite(created.Connection.ID(), created.Connection.Version(), created.Sequence)
	} else {
		c.Header("Idempotent-Replayed", "true")
	}
	resp := fromAggregate(created.Connection)
	c.Header("Location", "/v1/management/connections/"+resp.ID)
	c.Header("ETag", etag(resp.version))
	c.JSON(http.StatusCreated, resp)
}

// noteWrite remembers this process's write so that its next reads see it.
func (a *API) noteWrite(id string, version, seq uint64) {
	a.recent.add(id, version)
	for {
		cur := a.lastWrite.Load()
		if seq <= cur || a.lastWrite.CompareAndSwap(cur, seq) {
			return
		}
	}
}

func (a *API) get(c *gin.Context) {
	id, err := pathID(c)
	if err != nil {
		a.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	for name := range c.Request.URL.Query() {
		if name != "asOf" {
			a.fail(c, unknownParam(name))
			return
		}
	}
	if s, ok := c.GetQuery("asOf"); ok {
		at, valid := parseInstant(s)
		if !valid {
			a.fail(c, badRequest(CodeInvalidQueryParam, "Invalid query parameter", "asOf must be an RFC 3339 instant or a date (YYYY-MM-DD).",
				map[string]string{"asOf": "must be an RFC 3339 instant or a date"}))
			return
		}
		conn, err := a.asOf(ctx, id, at)
		if err != nil {
			a.fail(c, err)
			return
		}
		resp := fromAggregate(conn)
		c.Header("ETag", etag(resp.version))
		c.JSON(http.StatusOK, resp)
		return
	}
	doc, err := a.Reader.Get(ctx, id)
	if err == nil && doc.Version >= a.recent.version(id) {
		if doc.Deleted {
			a.fail(c, domain.ErrNotFound)
			return
		}
		resp := fromDocument(doc)
		c.Header("ETag", etag(resp.version))
		c.JSON(http.StatusOK, resp)
		return
	}
	// The read model lags behind a write, has never heard of the id, or is
	// down: the event stream, the system of record, answers instead.
	conn, lerr := a.fold(ctx, id)
	if lerr != nil {
		if err != nil && !errors.Is(err, readmodel.ErrNotFound) && errors.Is(lerr, domain.ErrNotFound) {
			lerr = err
		}
		a.fail(c, lerr)
		return
	}
	resp := fromAggregate(conn)
	c.Header("ETag", etag(resp.version))
	c.JSON(http.StatusOK, resp)
}

func (a *API) fold(ctx context.Context, id string) (*domain.Connection, error) {
	history, _, err := a.History.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	conn, err := domain.Rebuild(history)
	if err != nil {
		return nil, err
	}
	if conn.Deleted() {
		return nil, domain.ErrNotFound
	}
	return conn, nil
}

// Paging limits.
const (
	DefaultLimit = 10
	MaxLimit     = 100
)

func (a *API) list(c *gin.Context) {
	q, err := parseListQuery(c)
	if err != nil {
		a.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	if seq := a.lastWrite.Load(); seq > 0 {
		wctx, cancel := context.WithTimeout(ctx, a.ConsistencyWait)
		if err := a.Projection.WaitFor(wctx, seq); err != nil {
			a.Logger.Warn("list served before the read model caught up", "requestId", requestID(c), "sequence", seq)
		}
		cancel()
	}
	res, err := a.Reader.List(ctx, q)
	if err != nil {
		a.fail(c, err)
		return
	}
	out := listResponse{Items: make([]connectionResponse, 0, len(res.Items)), Page: q.Page, Limit: q.Limit, Total: res.Total}
	if q.After != nil {
		out.Page = 0 // a cursor page has no number
	}
	for i := range res.Items {
		out.Items = append(out.Items, fromDocument(&res.Items[i]))
	}
	if len(res.Items) == q.Limit {
		out.NextCursor = encodeCursor(q, readmodel.CursorOf(&res.Items[len(res.Items)-1], q.SortBy))
	}
	c.JSON(http.StatusOK, out)
}

// listParams are the query parameters of a list, besides metadata.<key>.
var listParams = []string{"page", "limit", "cursor", "type", "host", "databaseName", "configName",
	"createdFrom", "createdTo", "sortBy", "sortOrder"}

func invalidParam(name, reason string) error {
	return badRequest(CodeInvalidQueryParam, "Invalid query parameter", name+" "+reason+".", map[string]string{name: reason})
}

func parseListQuery(c *gin.Context) (readmodel.ListQuery, error) {
	values := c.Request.URL.Query()
	var others []string
	q := readmodel.ListQuery{SortBy: readmodel.SortCreatedAt}
	for name, vs := range values {
		switch {
		case strings.HasPrefix(name, "metadata."):
			key := strings.TrimPrefix(name, "metadata.")
			if key == "" || len(vs) != 1 {
				return q, invalidParam(truncate(name, 100), "must name one metadata key with one value")
			}
			if q.Metadata == nil {
				q.Metadata = map[string]string{}
			}
			q.Metadata[key] = vs[0]
		case contains(listParams, name):
			if len(vs) != 1 {
				return q, invalidParam(name, "must be given once")
			}
		default:
			others = append(others, name)
		}
	}
	if len(others) > 0 {
		return q, unknownParam(others[0])
	}
	var err error
	// Page and limit are checked by pageParams, which also refuses unknown names.
	keep := c.Request.URL.RawQuery
	c.Request.URL.RawQuery = url.Values{"page": values["page"], "limit": values["limit"]}.Encode()
	q.Page, q.Limit, err = pageParams(c, "page", "limit")
	c.Request.URL.RawQuery = keep
	if err != nil {
		return q, err
	}
	if t := values.Get("type"); t != "" {
		e, err := domain.ParseEngine(t)
		if err != nil {
			return q, invalidParam("type", err.Error())
		}
		q.Type = string(e)
	}
	q.Host = values.Get("host")
	q.DatabaseName = values.Get("databaseName")
	q.ConfigNamePrefix = values.Get("configName")
	if s := values.Get("createdFrom"); s != "" {
		t, ok := parseInstant(s)
		if !ok {
			return q, invalidParam("createdFrom", "must be an RFC 3339 instant or a date (YYYY-MM-DD)")
		}
		q.CreatedFrom = &t
	}
	if s := values.Get("createdTo"); s != "" {
		t, ok := parseInstant(s)
		if !ok {
			return q, invalidParam("createdTo", "must be an RFC 3339 instant or a date (YYYY-MM-DD)")
		}
		if len(s) == len(time.DateOnly) {
			t = t.AddDate(0, 0, 1) // a date includes its whole day
		} else {
			t = t.Add(time.Millisecond) // an instant is included
		}
		q.CreatedBefore = &t
	}
	switch s := values.Get("sortBy"); s {
	case "", readmodel.SortCreatedAt, readmodel.SortUpdatedAt, readmodel.SortConfigName:
		if s != "" {
			q.SortBy = s
		}
	default:
		return q, invalidParam("sortBy", "must be createdAt, updatedAt or configName")
	}
	switch s := strings.ToLower(values.Get("sortOrder")); s {
	case "", "desc":
	case "asc":
		q.Ascending = true
	default:
		return q, invalidParam("sortOrder", "must be asc or desc")
	}
	if s := values.Get("cursor"); s != "" {
		if values.Get("page") != "" {
			return q, invalidParam("cursor", "cannot be combined with page")
		}
		cur, err := decodeCursor(s, q)
		if err != nil {
			return q, invalidParam("cursor", "is not a cursor of this list (its sort changed, or it was altered)")
		}
		q.After = &cur
	}
	if h, ok := c.Request.Header["X-Product-Name"]; ok && len(h) > 0 {
		p, err := domain.ParseProductName(h[0])
		if err != nil {
			return q, badRequest(CodeInvalidHeader, "Invalid header", "X-Product-Name "+err.Error()+".", map[string]string{"X-Product-Name": err.Error()})
		}
		q.ProductName = p
	}
	return q, nil
}

// cursorToken is the content of an opaque cursor: the position and the sort
// it belongs to, so that a cursor is refused under another sort.
type cursorToken struct {
	SortBy string    `json:"s"`
	Asc    bool      `json:"a,omitempty"`
	Time   time.Time `json:"t,omitzero"`
	Name   string    `json:"n,omitempty"`
	ID     string    `json:"i"`
}

func encodeCursor(q readmodel.ListQuery, c readmodel.Cursor) string {
	b, _ := json.Marshal(cursorToken{SortBy: q.SortBy, Asc: q.Ascending, Time: c.Time, Name: c.Name, ID: c.ID})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string, q readmodel.ListQuery) (readmodel.Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return readmodel.Cursor{}, err
	}
	var t cursorToken
	if err := json.Unmarshal(b, &t); err != nil {
		return readmodel.Cursor{}, err
	}
	if t.SortBy != q.SortBy || t.Asc != q.Ascending || t.ID == "" {
		return readmodel.Cursor{}, errors.New("cursor of another sort")
	}
	return readmodel.Cursor{Time: t.Time, Name: t.Name, ID: t.ID}, nil
}

func etag(version uint64) string { return `"` + strconv.FormatUint(version, 10) + `"` }

// recentWrites remembers, for a while, the version this process last wrote
// of each connection, so that a read right after a write is served from the
// event stream when the read model is still behind.
type recentWrites struct {
	ttl  time.Duration
	mu   sync.Mutex
	m    map[string]recentWrite
	next time.Time
}

type recentWrite struct {
	version uint64
	at      time.Time
}

func newRecentWrites(ttl time.Duration) *recentWrites {
	return &recentWrites{ttl: ttl, m: map[string]recentWrite{}}
}

func (r *recentWrites) add(id string, version uint64) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[id] = recentWrite{version: version, at: now}
	if now.After(r.next) {
		for k, w := range r.m {
			if now.Sub(w.at) > r.ttl {
				delete(r.m, k)
			}
		}
		r.next = now.Add(r.ttl / 4)
	}
}

func (r *recentWrites) version(id string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.m[id]
	if !ok || time.Since(w.at) > r.ttl {
		return 0
	}
	return w.version
}
