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
	"time"

	"github.com/gin-gonic/gin"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/internal/auth"
	"github.com/connreg/registry/readmodel"
)

// Creator runs the create command.
type Creator interface {
	Handle(ctx context.Context, cmd commands.CreateConnection) (commands.Result, error)
}

// Queries answers reads with the read side's consistency rules
// (readmodel.Queries): read-your-writes, point in time, history.
type Queries interface {
	Get(ctx context.Context, id string, vis readmodel.Visibility) (*readmodel.Document, error)
	AsOf(ctx context.Context, id string, at time.Time, vis readmodel.Visibility) (*readmodel.Document, error)
	List(ctx context.Context, q readmodel.ListQuery) (readmodel.ListResult, error)
	History(ctx context.Context, id string, vis readmodel.Visibility, page, limit int) (readmodel.HistoryPage, error)
	NoteWrite(id string, version, seq uint64)
}

// SecretsReader hands out a connection's sealed secrets and records that it
// did (commands.SecretsReadHandler).
type SecretsReader interface {
	Handle(ctx context.Context, cmd commands.ReadSealedSecrets) (commands.SealedSecrets, error)
}

// Deps are the API's collaborators; all are required.
type Deps struct {
	Create  Creator
	Update  Updater
	Delete  Deleter
	Test    Tester
	Prober  commands.Prober
	Queries Queries
	Secrets SecretsReader
	// Auth establishes the caller of every connection route (auth.Off when
	// authentication is switched off).
	Auth   Authenticator
	Logger *slog.Logger

	Discover Discoverer
	// SchemaMaxAge is how old a recorded schema validate-schema trusts
	// without discovering again; DefaultSchemaMaxAge when zero.
	SchemaMaxAge time.Duration
	// Optional: Middleware runs around every route (telemetry); Ready
	// answers /readyz and Metrics /metrics.
	Middleware []gin.HandlerFunc
	Ready      http.Handler
	Metrics    http.Handler
}

// API serves /v1/management/connections.
type API struct {
	Deps
	confirmed confirmations
}

// New builds the API.
func New(d Deps) (*API, error) {
	if d.Create == nil || d.Update == nil || d.Delete == nil || d.Test == nil || d.Prober == nil || d.Queries == nil || d.Secrets == nil || d.Auth == nil || d.Logger == nil {
		return nil, errors.New("httpapi: New needs create, update, delete, test and secrets handlers, a prober, the queries, an authenticator and a logger")
	}
	if d.Discover == nil {
		return nil, errors.New("httpapi: New needs a discover handler")
	}
	if d.SchemaMaxAge <= 0 {
		d.SchemaMaxAge = DefaultSchemaMaxAge
	}
	return &API{Deps: d}, nil
}

// Handler returns the HTTP handler with every route.
func (a *API) Handler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// Gin would answer a path with a trailing slash with an HTML redirect:
	// every answer of the API is JSON, so such a path is simply unknown.
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.Use(withRequestID)
	r.Use(a.Middleware...)
	r.Use(accessLog(a.Logger), recoverer(a.Logger), decodableQuery(a.Logger))
	r.NoRoute(func(c *gin.Context) {
		a.fail(c, &requestError{status: http.StatusNotFound, body: ErrorBody{Code: CodeNotFound, Title: "Not found", Message: "No such route."}})
	})
	// Gin has set Allow to the route's methods before this runs.
	r.NoMethod(func(c *gin.Context) {
		a.fail(c, &requestError{status: http.StatusMethodNotAllowed, body: ErrorBody{Code: CodeMethodNotAllowed, Title: "Method not allowed",
			Message: "This route does not accept " + c.Request.Method + "; Allow lists the methods it does."}})
	})
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	a.opsRoutes(r)
	g := r.Group("/v1/management/connections")
	read, write, test := a.requireScope(auth.ScopeRead), a.requireScope(auth.ScopeWrite), a.requireScope(auth.ScopeTest)
	g.POST("", write, a.create)
	g.POST("/test", test, a.testUnsaved)
	g.POST("/:id/test", test, a.testStored)
	g.POST("/validate-schema", read, a.validateSchema)
	g.GET("/:id/schema", read, a.schema)
	g.GET("", read, a.list)
	g.GET("/:id", read, a.get)
	g.GET("/:id/history", read, a.history)
	g.PATCH("/:id", write, a.update)
	g.DELETE("/:id", write, a.remove)
	return r
}

func (a *API) fail(c *gin.Context, err error) { respondError(c, a.Logger, err) }

func (a *API) origin(c *gin.Context) domain.Origin {
	correlation := c.GetHeader("X-Correlation-Id")
	if !safeRequestID.MatchString(correlation) {
		correlation = "" // it would be kept forever in the event: only a safe token is
	}
	return domain.Origin{Actor: principal(c).Subject, RequestID: requestID(c), CorrelationID: correlation}
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
	created, err := a.Create.Handle(c.Request.Context(), commands.CreateConnection{Input: in, Scope: scope(c), Origin: a.origin(c), IdempotencyKey: key})
	if err != nil {
		a.fail(c, err)
		return
	}
	if created.Changed {
		a.Queries.NoteWrite(created.Connection.ID(), created.Connection.Version(), created.Sequence)
	} else {
		c.Header("Idempotent-Replayed", "true")
	}
	resp := fromAggregate(created.Connection)
	c.Header("Location", "/v1/management/connections/"+resp.ID)
	c.Header("ETag", etag(resp.version))
	c.JSON(http.StatusCreated, resp)
}

func (a *API) get(c *gin.Context) {
	id, err := pathID(c)
	if err != nil {
		a.fail(c, err)
		return
	}
	at, sealed, err := getParams(c.Request.URL.Query())
	if err != nil {
		a.fail(c, err)
		return
	}
	if sealed {
		if err := sealedScope(c); err != nil {
			a.fail(c, err)
			return
		}
		res, err := a.Secrets.Handle(c.Request.Context(), commands.ReadSealedSecrets{ID: id, Scope: scope(c), Origin: a.origin(c)})
		if err != nil {
			a.fail(c, err)
			return
		}
		a.Queries.NoteWrite(id, res.Connection.Version(), res.Sequence)
		resp := withSealedSecrets(fromAggregate(res.Connection), res)
		c.Header("ETag", etag(resp.version))
		c.JSON(http.StatusOK, resp)
		return
	}
	var doc *readmodel.Document
	if at != nil {
		doc, err = a.Queries.AsOf(c.Request.Context(), id, *at, visibility(c))
	} else {
		doc, err = a.Queries.Get(c.Request.Context(), id, visibility(c))
	}
	if err != nil {
		a.fail(c, err)
		return
	}
	resp := fromDocument(doc)
	c.Header("ETag", etag(resp.version))
	c.JSON(http.StatusOK, resp)
}

func (a *API) list(c *gin.Context) {
	values := c.Request.URL.Query()
	q, err := parseListQuery(values, c.Request.Header)
	if err != nil {
		a.fail(c, err)
		return
	}
	sealed, err := includeParam(values)
	if err == nil && sealed {
		err = sealedScope(c)
	}
	if err != nil {
		a.fail(c, err)
		return
	}
	q.Organization = principal(c).Organization // a caller lists its own organization only
	res, err := a.Queries.List(c.Request.Context(), q)
	if err != nil {
		a.fail(c, err)
		return
	}
	out := listResponse{Items: make([]connectionResponse, 0, len(res.Items)), Page: q.Page, Limit: q.Limit, Total: res.Total}
	if q.After != nil {
		out.Page = 0 // a cursor page has no number
	}
	for i := range res.Items {
		if !sealed {
			out.Items = append(out.Items, fromDocument(&res.Items[i]))
			continue
		}
		id := res.Items[i].ID
		s, err := a.Secrets.Handle(c.Request.Context(), commands.ReadSealedSecrets{ID: id, Scope: scope(c), Origin: a.origin(c)})
		if errors.Is(err, domain.ErrNotFound) {
			continue // deleted since the page was read
		}
		if err != nil {
			a.fail(c, err)
			return
		}
		a.Queries.NoteWrite(id, s.Connection.Version(), s.Sequence)
		out.Items = append(out.Items, withSealedSecrets(fromAggregate(s.Connection), s))
	}
	if len(res.Items) == q.Limit {
		out.NextCursor = encodeCursor(q, readmodel.CursorOf(&res.Items[len(res.Items)-1], q.SortBy))
	}
	c.JSON(http.StatusOK, out)
}

func etag(version uint64) string { return `"` + strconv.FormatUint(version, 10) + `"` }
