package readmodel

import (
	"slices"

	"github.com/connreg/registry/events"
)

// describeSchemaChange names what a discovered schema changed since the one
// before it (nil for the first): tables and views as "table", columns as
// "table.column"; a column whose type, nullability or key changed is
// "changed". A table that appears or vanishes is named alone, not its columns.
func describeSchemaChange(h *HistoryEntry, before, after *events.ConnectionSchemaDiscoveredV1) {
	columns := func(p *events.ConnectionSchemaDiscoveredV1) (map[string]bool, map[string]events.SchemaColumn) {
		tables, cols := map[string]bool{}, map[string]events.SchemaColumn{}
		if p == nil {
			return tables, cols
		}
		for _, t := range p.Tables {
			tables[t.Name] = true
			for _, c := range t.Columns {
				cols[t.Name+"."+c.Name] = c
			}
		}
		return tables, cols
	}
	oldTables, oldCols := columns(before)
	newTables, newCols := columns(after)
	var added, removed, changed []string
	for t := range newTables {
		if !oldTables[t] {
			added = append(added, t)
		}
	}
	for t := range oldTables {
		if !newTables[t] {
			removed = append(removed, t)
		}
	}
	for name, c := range newCols {
		table := name[:len(name)-len(c.Name)-1]
		old, ok := oldCols[name]
		switch {
		case !ok && oldTables[table]:
			added = append(added, name)
		case ok && old != c:
			changed = append(changed, name)
		}
	}
	for name, c := range oldCols {
		if table := name[:len(name)-len(c.Name)-1]; newTables[table] {
			if _, ok := newCols[name]; !ok {
				removed = append(removed, name)
			}
		}
	}
	if h.Values == nil {
		h.Values = map[string]any{}
	}
	h.Values["digest"] = after.Digest
	h.Values["tables"] = len(after.Tables)
	for key, list := range map[string][]string{"added": added, "removed": removed, "changed": changed} {
		if len(list) > 0 {
			slices.Sort(list)
			h.Values[key] = list
			h.Changed = append(h.Changed, list...)
		}
	}
	slices.Sort(h.Changed)
	h.Changed = slices.Compact(h.Changed)
}
