// Package httpapi is the REST adapter: it turns requests into commands and
// queries, and errors into answers (in errors.go, the only place that maps
// errors to HTTP).
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
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
	if d.Create == nil || d.Update == nil || d.Delete == nil || d.Reader == nil || d.History == nil || d.Projection == nil || d.Logger == nil {
		return nil, errors.New("httpapi: New needs create, update and delete handlers, a reader, a history, a projection and a logger")
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
	return domain.Origin{Actor: "anonymous", RequestID: requestID(c), CorrelationID: c.GetHeader("X-Correlation-Id")}
}

func (a *API) create(c *gin.Context) {
	var req createRequest
	violations := &domain.ValidationError{}
	if err := readJSONBody(c.Writer, c.Request, &req); err != nil && !errors.As(err, &violations) {
		a.fail(c, err)
		return
	}
	in, more := req.specInput(c.GetHeader("X-Product-Name"))
	violations.Merge(more)
	if len(violations.Fields) > 0 {
		_, _, err := domain.ParseSpec(in)
		var more *domain.ValidationError
		if errors.As(err, &more) {
			violations.Merge(more)
		}
		a.fail(c, violations)
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
	for i := range res.Items {
		out.Items = append(out.Items, fromDocument(&res.Items[i]))
	}
	c.JSON(http.StatusOK, out)
}

func parseListQuery(c *gin.Context) (readmodel.ListQuery, error) {
	q := readmodel.ListQuery{Page: 1, Limit: DefaultLimit}
	for name := range c.Request.URL.Query() {
		if name != "page" && name != "limit" {
			return q, badRequest(CodeInvalidQueryParam, "Invalid query parameter",
				"Unknown query parameter "+strconv.Quote(truncate(name, 100))+".", map[string]string{truncate(name, 100): "is not a known parameter"})
		}
	}
	if s := c.Query("page"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, badRequest(CodeInvalidQueryParam, "Invalid query parameter", "page must be a positive integer.", map[string]string{"page": "must be a positive integer"})
		}
		q.Page = n
	}
	if s := c.Query("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, badRequest(CodeInvalidQueryParam, "Invalid query parameter", "limit must be a positive integer.", map[string]string{"limit": "must be a positive integer"})
		}
		if n > MaxLimit {
			return q, badRequest(CodeLimitTooLarge, "Limit too large", "limit must be at most 100.", map[string]string{"limit": "must be at most 100"})
		}
		q.Limit = n
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
