package readmodel

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
)

// Index is an in-memory copy of the live documents with one sorted order
// per sort key, for the list queries. It was made for the embedded FerretDB
// store, which scanned its whole collection for any query; the embedded
// store is now SQLite with an index per filter and sort (internal/sqlitestore),
// which needs no copy in memory. An API process on MongoDB (MONGO_URI) with
// its own projector still keeps one: kept by the projector (write-through
// after each successful batch) and loaded from the store at start, at the
// cost of the documents' memory and a load that grows with the registry.
type Index struct {
	mu        sync.RWMutex
	docs      map[string]*Document
	byCreated []*Document
	byUpdated []*Document
	byName    []*Document
}

// NewIndex returns an empty index.
func NewIndex() *Index { return &Index{docs: map[string]*Document{}} }

func createdOrder(a, b *Document) int {
	return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
}

func updatedOrder(a, b *Document) int {
	return cmp.Or(a.UpdatedAt.Compare(b.UpdatedAt), strings.Compare(a.ID, b.ID))
}

func nameOrder(a, b *Document) int {
	return cmp.Or(strings.Compare(a.ConfigNameKey, b.ConfigNameKey), strings.Compare(a.ID, b.ID))
}

func remove(list []*Document, d *Document, order func(a, b *Document) int) []*Document {
	if i, ok := slices.BinarySearchFunc(list, d, order); ok {
		return slices.Delete(list, i, i+1)
	}
	return list
}

func insert(list []*Document, d *Document, order func(a, b *Document) int) []*Document {
	i, _ := slices.BinarySearchFunc(list, d, order)
	return slices.Insert(list, i, d)
}

// Put records a document's new state. A state older than the one held is
// ignored, so loading and projecting may overlap; a deleted document leaves
// the index.
func (x *Index) Put(d *Document) {
	x.mu.Lock()
	defer x.mu.Unlock()
	old, ok := x.docs[d.ID]
	if ok && old.Version >= d.Version {
		return
	}
	if ok {
		x.byCreated = remove(x.byCreated, old, createdOrder)
		x.byUpdated = remove(x.byUpdated, old, updatedOrder)
		x.byName = remove(x.byName, old, nameOrder)
		delete(x.docs, d.ID)
	}
	c := d.clone()
	x.docs[d.ID] = c
	if d.Deleted {
		return // kept for its version, out of every list
	}
	x.byCreated = insert(x.byCreated, c, createdOrder)
	x.byUpdated = insert(x.byUpdated, c, updatedOrder)
	x.byName = insert(x.byName, c, nameOrder)
}

// current returns the state the index holds for id, deleted or not.
func (x *Index) current(id string) (*Document, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	d, ok := x.docs[id]
	if !ok {
		return nil, false
	}
	return d.clone(), true
}

// Len is the number of live documents.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.byCreated)
}

// Get returns a live document.
func (x *Index) Get(_ context.Context, id string) (*Document, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	d, ok := x.docs[id]
	if !ok || d.Deleted {
		return nil, ErrNotFound
	}
	return d.clone(), nil
}

// List answers a list query: the page, and how many documents match.
func (x *Index) List(_ context.Context, q ListQuery) (ListResult, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	list, order := x.byCreated, createdOrder
	switch q.SortBy {
	case SortUpdatedAt:
		list, order = x.byUpdated, updatedOrder
	case SortConfigName:
		list, order = x.byName, nameOrder
	}
	match := q.matcher()
	res := ListResult{Items: []Document{}}
	skip := 0
	if q.After == nil && q.Page > 1 {
		skip = (q.Page - 1) * q.Limit
	}
	var after *Document
	if q.After != nil {
		after = &Document{ID: q.After.ID, CreatedAt: q.After.Time, UpdatedAt: q.After.Time, ConfigNameKey: q.After.Name}
	}
	visit := func(d *Document) {
		if !match(d) {
			return
		}
		res.Total++
		if after != nil {
			if c := order(d, after); q.Ascending && c <= 0 || !q.Ascending && c >= 0 {
				return
			}
		}
		if skip > 0 {
			skip--
			return
		}
		if len(res.Items) < q.Limit {
			res.Items = append(res.Items, *d.clone())
		}
	}
	if q.Ascending {
		for _, d := range list {
			visit(d)
		}
	} else {
		for i := len(list) - 1; i >= 0; i-- {
			visit(list[i])
		}
	}
	return res, nil
}

// matcher compiles the query's filters.
func (q ListQuery) matcher() func(*Document) bool {
	prefix := strings.ToLower(q.ConfigNamePrefix)
	return func(d *Document) bool {
		switch {
		case q.Organization != "" && d.Organization != q.Organization,
			q.ProductName != "" && d.ProductName != q.ProductName,
			q.Type != "" && d.Type != q.Type,
			q.Host != "" && d.Host != q.Host,
			q.DatabaseName != "" && d.DatabaseName != q.DatabaseName,
			prefix != "" && !strings.HasPrefix(d.ConfigNameKey, prefix),
			q.CreatedFrom != nil && d.CreatedAt.Before(*q.CreatedFrom),
			q.CreatedBefore != nil && !d.CreatedAt.Before(*q.CreatedBefore),
			q.Health != "" && d.HealthStatus() != q.Health:
			return false
		}
		for k, v := range q.Metadata {
			if got, ok := d.Metadata[k]; !ok || got != v {
				return false
			}
		}
		return true
	}
}
