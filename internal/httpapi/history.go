package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
)

// historyEntry is one event of a connection as auditors see it: who, when,
// in which request, and which fields changed. Secret fields are named when
// they change; their values never appear, not even sealed.
type historyEntry struct {
	Version    uint64         `json:"version"`
	EventID    string         `json:"eventId"`
	Type       string         `json:"type"`
	OccurredAt string         `json:"occurredAt"`
	Actor      string         `json:"actor"`
	RequestID  string         `json:"requestId,omitempty"`
	Changed    []string       `json:"changed,omitempty"`
	Values     map[string]any `json:"values,omitempty"`
}

type historyResponse struct {
	Items []historyEntry `json:"items"`
	Page  int            `json:"page"`
	Limit int            `json:"limit"`
	Total int            `json:"total"`
}

func describe(e events.Event) historyEntry {
	h := historyEntry{
		Version:    e.AggregateVersion,
		EventID:    e.EventID,
		Type:       e.Type(),
		OccurredAt: rfc3339(e.OccurredAt),
		Actor:      e.Actor,
		RequestID:  e.RequestID,
	}
	values := map[string]any{}
	set := func(field string, v any) {
		h.Changed = append(h.Changed, field)
		if v != nil {
			values[field] = v
		}
	}
	switch p := e.Payload.(type) {
	case *events.ConnectionCreatedV1:
		set(events.FieldConfigName, p.ConfigName)
		set("productName", p.ProductName)
		set(events.FieldType, p.Type)
		set(events.FieldHost, p.Host)
		set(events.FieldPort, p.Port)
		set(events.FieldDatabaseName, p.DatabaseName)
		set(events.FieldUserName, p.UserName)
		set(events.FieldPassword, nil)
		if p.Schema != "" {
			set(events.FieldSchema, p.Schema)
		}
		if p.SSL != nil {
			set(events.FieldSSL, map[string]any{"mode": p.SSL.Mode})
		}
		if len(p.Metadata) > 0 {
			set(events.FieldMetadata, p.Metadata)
		}
	case *events.ConnectionUpdatedV1:
		for _, f := range p.Changed {
			var v any
			switch f {
			case events.FieldConfigName:
				v = deref(p.ConfigName)
			case events.FieldType:
				v = deref(p.Type)
			case events.FieldHost:
				v = deref(p.Host)
			case events.FieldPort:
				if p.Port != nil {
					v = *p.Port
				}
			case events.FieldDatabaseName:
				v = deref(p.DatabaseName)
			case events.FieldUserName:
				v = deref(p.UserName)
			case events.FieldSchema:
				v = deref(p.Schema)
			case events.FieldSSL:
				if p.SSL != nil {
					v = map[string]any{"mode": p.SSL.Mode}
				} else {
					v = map[string]any{}
				}
			case events.FieldMetadata:
				v = p.Metadata
			}
			set(f, v)
		}
	case *events.ConnectionCredentialsResealedV1:
		set(events.FieldPassword, nil)
		if p.SSLKey != nil {
			set("ssl.key", nil)
		}
	case *events.ConnectionTestedV1:
		values["status"] = p.Status
		values["latencyMs"] = p.LatencyMs
		if p.Reason != "" {
			values["reason"] = p.Reason
		}
	}
	if len(values) > 0 {
		h.Values = values
	}
	return h
}

func (a *API) history(c *gin.Context) {
	id, err := pathID(c)
	if err != nil {
		a.fail(c, err)
		return
	}
	page, limit, err := pageParams(c, "page", "limit")
	if err != nil {
		a.fail(c, err)
		return
	}
	evs, _, err := a.History.Load(c.Request.Context(), id)
	if err != nil {
		a.fail(c, err)
		return
	}
	out := historyResponse{Items: []historyEntry{}, Page: page, Limit: limit, Total: len(evs)}
	for i := (page - 1) * limit; i < len(evs) && i < page*limit; i++ {
		out.Items = append(out.Items, describe(evs[i]))
	}
	c.JSON(http.StatusOK, out)
}

// pageParams reads page and limit and refuses any other query parameter.
func pageParams(c *gin.Context, allowed ...string) (page, limit int, err error) {
	for name := range c.Request.URL.Query() {
		if !contains(allowed, name) {
			return 0, 0, unknownParam(name)
		}
	}
	page, limit = 1, DefaultLimit
	if s := c.Query("page"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return 0, 0, badRequest(CodeInvalidQueryParam, "Invalid query parameter", "page must be a positive integer.", map[string]string{"page": "must be a positive integer"})
		}
		page = n
	}
	if s := c.Query("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return 0, 0, badRequest(CodeInvalidQueryParam, "Invalid query parameter", "limit must be a positive integer.", map[string]string{"limit": "must be a positive integer"})
		}
		if n > MaxLimit {
			return 0, 0, badRequest(CodeLimitTooLarge, "Limit too large", "limit must be at most 100.", map[string]string{"limit": "must be at most 100"})
		}
		limit = n
	}
	return page, limit, nil
}

func unknownParam(name string) error {
	n := truncate(name, 100)
	return badRequest(CodeInvalidQueryParam, "Invalid query parameter", "Unknown query parameter "+strconv.Quote(n)+".",
		map[string]string{n: "is not a known parameter"})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// parseInstant accepts RFC 3339 or a calendar date (midnight UTC).
func parseInstant(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// asOf folds a connection's events up to an instant: the connection as it
// was then, deleted or not since.
func (a *API) asOf(ctx context.Context, id string, at time.Time) (*domain.Connection, error) {
	evs, _, err := a.History.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	n := 0
	for n < len(evs) && !evs[n].OccurredAt.After(at) {
		n++
	}
	if n == 0 {
		return nil, domain.ErrNotFound
	}
	conn, err := domain.Rebuild(evs[:n])
	if err != nil {
		return nil, err
	}
	if conn.Deleted() {
		return nil, domain.ErrNotFound
	}
	return conn, nil
}
