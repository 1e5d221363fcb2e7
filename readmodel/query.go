package readmodel

import (
	"errors"
	"time"
)

// ErrNotFound is returned when no document has the id.
var ErrNotFound = errors.New("readmodel: no such document")

// Sort keys of a list.
const (
	SortCreatedAt  = "createdAt"
	SortUpdatedAt  = "updatedAt"
	SortConfigName = "configName"
)

// ListQuery selects live connections. Every field narrows the result; zero
// values do not filter.
type ListQuery struct {
	// Organization: the API always sets it (a caller lists only its own
	// organization); empty, for operator tools, lists every organization.
	Organization     string
	ProductName      string
	Type             string
	Host             string
	DatabaseName     string
	ConfigNamePrefix string // compared case-insensitively
	Metadata         map[string]string
	Health           string     // events.HealthHealthy, HealthFailing or HealthUnknown
	CreatedFrom      *time.Time // inclusive
	CreatedBefore    *time.Time // exclusive
	SortBy           string     // SortCreatedAt (default), SortUpdatedAt, SortConfigName
	Ascending        bool
	Page             int // 1-based; ignored when After is set
	Limit            int
	After            *Cursor // keyset paging: the page after this position
}

// Cursor is a position in a sorted list: the sort value and id of the last
// document of a page. Paging by cursor is stable while documents are added.
type Cursor struct {
	Time time.Time // for time sorts
	Name string    // for SortConfigName (the lower-cased name)
	ID   string
}

// CursorOf is the position of d in a list sorted by sortBy.
func CursorOf(d *Document, sortBy string) Cursor {
	switch sortBy {
	case SortUpdatedAt:
		return Cursor{Time: d.UpdatedAt, ID: d.ID}
	case SortConfigName:
		return Cursor{Name: d.ConfigNameKey, ID: d.ID}
	}
	return Cursor{Time: d.CreatedAt, ID: d.ID}
}

// ListResult is one page of documents and how many match in all.
type ListResult struct {
	Items []Document
	Total int64
}
