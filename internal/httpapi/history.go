package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"
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

func (a *API) history(c *gin.Context) {
	id, err := pathID(c)
	if err != nil {
		a.fail(c, err)
		return
	}
	page, limit, err := pageParams(c.Request.URL.Query())
	if err != nil {
		a.fail(c, err)
		return
	}
	res, err := a.Queries.History(c.Request.Context(), id, visibility(c), page, limit)
	if err != nil {
		a.fail(c, err)
		return
	}
	out := historyResponse{Items: make([]historyEntry, 0, len(res.Items)), Page: page, Limit: limit, Total: res.Total}
	for _, e := range res.Items {
		out.Items = append(out.Items, historyEntry{Version: e.Version, EventID: e.EventID, Type: e.Type,
			OccurredAt: rfc3339(e.OccurredAt), Actor: e.Actor, RequestID: e.RequestID, Changed: e.Changed, Values: e.Values})
	}
	c.JSON(http.StatusOK, out)
}
