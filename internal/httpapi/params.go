package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
	"github.com/connreg/registry/readmodel"
)

// This file reads everything a request says besides its body: path, query
// and the headers that select or guard (If-Match).

// Paging limits.
const (
	DefaultLimit = 10
	MaxLimit     = 100
)

// getParams reads the query of a single read: asOf, when present, asks for
// the connection as it was at that instant; include=sealedSecrets asks for
// its sealed secrets too (not combinable with asOf).
func getParams(values url.Values) (at *time.Time, sealed bool, err error) {
	for name := range values {
		if name != "asOf" && name != "include" {
			return nil, false, unknownParam(name)
		}
	}
	if sealed, err = includeParam(values); err != nil {
		return nil, false, err
	}
	s, ok := values["asOf"]
	if !ok {
		return nil, sealed, nil
	}
	t, valid := parseInstant(s[0])
	if len(s) != 1 || !valid {
		return nil, false, invalidParam("asOf", "must be an RFC 3339 instant or a date (YYYY-MM-DD)")
	}
	if sealed {
		return nil, false, invalidParam("include", "cannot be combined with asOf: sealed secrets are handed out as they are now")
	}
	return &t, false, nil
}

// includeParam reads include, whose one value is sealedSecrets.
func includeParam(values url.Values) (bool, error) {
	vs, ok := values["include"]
	if !ok {
		return false, nil
	}
	if len(vs) != 1 || vs[0] != "sealedSecrets" {
		return false, invalidParam("include", "must be sealedSecrets")
	}
	return true, nil
}

// pageParams reads page and limit and refuses any other query parameter.
func pageParams(values url.Values) (page, limit int, err error) {
	for name, vs := range values {
		if name != "page" && name != "limit" {
			return 0, 0, unknownParam(name)
		}
		if len(vs) != 1 {
			return 0, 0, invalidParam(name, "must be given once")
		}
	}
	return pageAndLimit(values)
}

// pageAndLimit reads page (default 1) and limit (default DefaultLimit, at
// most MaxLimit).
func pageAndLimit(values url.Values) (page, limit int, err error) {
	page, limit = 1, DefaultLimit
	if s := values.Get("page"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return 0, 0, badRequest(CodeInvalidQueryParam, "Invalid query parameter", "page must be a positive integer.", map[string]string{"page": "must be a positive integer"})
		}
		page = n
	}
	if s := values.Get("limit"); s != "" {
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
	n := domain.Printable(truncate(name, 100))
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

// listParams are the query parameters of a list, besides metadata.<key>.
var listParams = []string{"page", "limit", "cursor", "type", "host", "databaseName", "configName",
	"createdFrom", "createdTo", "sortBy", "sortOrder", "include", "health", "startDate", "endDate"}

// listAliases are the names Lerian's manager gives to list parameters, so
// that its clients' filters keep working.
var listAliases = map[string]string{"startDate": "createdFrom", "endDate": "createdTo"}

func invalidParam(name, reason string) error {
	return badRequest(CodeInvalidQueryParam, "Invalid query parameter", name+" "+reason+".", map[string]string{name: reason})
}

// parseListQuery reads a list's query parameters and its X-Product-Name
// header (required), refusing unknown and repeated parameters.
func parseListQuery(values url.Values, header http.Header) (readmodel.ListQuery, error) {
	var others []string
	q := readmodel.ListQuery{SortBy: readmodel.SortCreatedAt}
	for name, vs := range values {
		switch {
		case strings.HasPrefix(name, "metadata."):
			key := strings.TrimPrefix(name, "metadata.")
			if key == "" || len(vs) != 1 {
				return q, invalidParam(domain.Printable(truncate(name, 100)), "must name one metadata key with one value")
			}
			if err := domain.ParseMetadataKey(key); err != nil {
				// No connection can have such a key: the domain refuses it.
				return q, invalidParam(domain.Printable(truncate(name, 100)), "names a metadata key that cannot exist: "+err.Error())
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
	for alias, name := range listAliases {
		if v, ok := values[alias]; ok {
			if _, both := values[name]; both {
				return q, invalidParam(alias, "cannot be combined with "+name)
			}
			values = maps.Clone(values)
			values[name] = v
		}
	}
	var err error
	if q.Page, q.Limit, err = pageAndLimit(values); err != nil {
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
	switch h := values.Get("health"); h {
	case "", events.HealthHealthy, events.HealthFailing, events.HealthUnknown:
		q.Health = h
	default:
		return q, invalidParam("health", "must be healthy, failing or unknown")
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
	// A list is always of one product.
	if q.ProductName, err = productScope(header); err == nil && q.ProductName == "" {
		err = badRequest(CodeInvalidHeader, "Invalid header", "X-Product-Name is required.", map[string]string{"X-Product-Name": "is required"})
	}
	return q, err
}

// productScope is the product of X-Product-Name, empty when the header is absent.
func productScope(header http.Header) (string, error) {
	h, ok := header["X-Product-Name"]
	if !ok || len(h) == 0 {
		return "", nil
	}
	p, err := domain.ParseProductName(h[0])
	if err != nil {
		return "", badRequest(CodeInvalidHeader, "Invalid header", "X-Product-Name "+err.Error()+".", map[string]string{"X-Product-Name": err.Error()})
	}
	return p, nil
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

// ifMatch reads If-Match: a version as the API's ETag spells it ("3"), or *.
func ifMatch(c *gin.Context) (*uint64, error) {
	h := strings.TrimSpace(c.GetHeader("If-Match"))
	if h == "" || h == "*" {
		return nil, nil
	}
	weak := strings.HasPrefix(h, "W/")
	v, err := strconv.ParseUint(strings.Trim(strings.TrimPrefix(h, "W/"), `"`), 10, 64)
	if err != nil {
		return nil, badRequest(CodeInvalidHeader, "Invalid header", `If-Match must be an ETag this API returned, such as "3".`,
			map[string]string{"If-Match": "must be an ETag this API returned"})
	}
	if weak {
		// If-Match uses the strong comparison (RFC 9110, 13.1.1): a weak
		// ETag never matches, so it is a failed precondition, not a match.
		return nil, &requestError{status: http.StatusPreconditionFailed, body: ErrorBody{Code: CodeStaleVersion,
			Title: "Precondition failed", Message: `If-Match compares ETags strongly: a weak ETag (W/"...") never matches; send the ETag as the API returned it.`,
			Fields: map[string]string{"If-Match": "a weak ETag never matches"}}}
	}
	return &v, nil
}

func pathID(c *gin.Context) (string, error) {
	id := c.Param("id")
	if _, err := uuid.Parse(id); err != nil {
		return "", badRequest(CodeInvalidPathParam, "Invalid path parameter", "The id must be a UUID.", map[string]string{"id": "must be a UUID"})
	}
	return id, nil
}

// target reads the connection id of the path and the If-Match version.
func target(c *gin.Context) (string, *uint64, error) {
	id, err := pathID(c)
	if err != nil {
		return "", nil, err
	}
	version, err := ifMatch(c)
	return id, version, err
}
