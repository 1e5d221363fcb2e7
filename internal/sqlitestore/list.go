package sqlitestore

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/connreg/registry/readmodel"
)

// List returns one page of live connections and how many match. Every
// filter and sort has an index (see tableSchema), so a page costs the
// index range it reads; the total counts the matching index entries.
func (r *Repository) List(ctx context.Context, q readmodel.ListQuery) (readmodel.ListResult, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	where, args := listFilter(q)
	res := readmodel.ListResult{Items: []readmodel.Document{}}
	count, countArgs := r.q(`SELECT count(*) FROM "{T}" WHERE `+where), args
	if byProductOnly(q) {
		count, countArgs = r.q(`SELECT coalesce(sum(live), 0) FROM "{T}_counts"`), nil
		if q.ProductName != "" {
			count, countArgs = count+` WHERE product = ?`, []any{q.ProductName}
		}
	}
	if err := r.reader.QueryRowContext(ctx, count, countArgs...).Scan(&res.Total); err != nil {
		return res, unavailable(err)
	}
	if q.Limit <= 0 || res.Total == 0 {
		return res, nil
	}
	col := sortColumn(q.SortBy)
	dir, op := "DESC", "<"
	if q.Ascending {
		dir, op = "ASC", ">"
	}
	offset := 0
	if q.After != nil {
		var v any = q.After.Time.UnixMilli()
		if col == "name_key" {
			v = q.After.Name
		}
		where += " AND (" + col + ", id) " + op + " (?, ?)"
		args = append(args, v, q.After.ID)
	} else if q.Page > 1 {
		offset = (q.Page - 1) * q.Limit
	}
	args = append(args, q.Limit, offset)
	rows, err := r.reader.QueryContext(ctx, r.q(`SELECT doc, NULL FROM "{T}" WHERE `+where+
		` ORDER BY `+col+` `+dir+`, id `+dir+` LIMIT ? OFFSET ?`), args...)
	if err != nil {
		return res, unavailable(err)
	}
	err = scanDocs(rows, func(d *readmodel.Document) { res.Items = append(res.Items, *d) })
	return res, err
}

func sortColumn(sortBy string) string {
	switch sortBy {
	case readmodel.SortUpdatedAt:
		return "updated_at"
	case readmodel.SortConfigName:
		return "name_key"
	}
	return "created_at"
}

// listFilter is the WHERE clause of q. "deleted = 0" is written out, not
// bound: SQLite uses a partial index only for a query whose WHERE clause
// implies the index's.
func listFilter(q readmodel.ListQuery) (string, []any) {
	conds := []string{"deleted = 0"}
	var args []any
	eq := func(col, v string) {
		if v != "" {
			conds = append(conds, col+" = ?")
			args = append(args, v)
		}
	}
	if q.Organization != "" {
		// No column of its own yet: read from the stored document (a scan of
		// the product's live rows, which the product index narrows).
		conds = append(conds, "json_extract(CAST(doc AS TEXT), '$.Organization') = ?")
		args = append(args, q.Organization)
	}
	eq("product", q.ProductName)
	eq("type", q.Type)
	eq("host", q.Host)
	eq("database_name", q.DatabaseName)
	eq("health", q.Health)
	if p := strings.ToLower(q.ConfigNamePrefix); p != "" {
		conds = append(conds, "name_key >= ? AND name_key < ?")
		args = append(args, p, p+"\uffff")
	}
	for _, k := range slices.Sorted(maps.Keys(q.Metadata)) {
		conds = append(conds, `id IN (SELECT id FROM "{T}_metadata" WHERE key = ? AND value = ?)`)
		args = append(args, k, q.Metadata[k])
	}
	if q.CreatedFrom != nil {
		conds = append(conds, "created_at >= ?")
		args = append(args, q.CreatedFrom.UnixMilli())
	}
	if q.CreatedBefore != nil {
		conds = append(conds, "created_at < ?")
		args = append(args, q.CreatedBefore.UnixMilli())
	}
	return strings.Join(conds, " AND "), args
}

// byProductOnly reports whether q filters on nothing but the product, whose
// totals the counts table keeps.
func byProductOnly(q readmodel.ListQuery) bool {
	return q.Organization == "" && q.Type == "" && q.Host == "" && q.DatabaseName == "" && q.ConfigNamePrefix == "" && q.Health == "" &&
		len(q.Metadata) == 0 && q.CreatedFrom == nil && q.CreatedBefore == nil
}
