package readmodel

import "errors"

// ErrNotFound is returned when no document has the id.
var ErrNotFound = errors.New("readmodel: no such document")

// ListQuery selects live connections, newest first.
type ListQuery struct {
	ProductName string // empty: every product
	Page        int    // 1-based
	Limit       int
}

// ListResult is one page of documents and how many match in all.
type ListResult struct {
	Items []Document
	Total int64
}
