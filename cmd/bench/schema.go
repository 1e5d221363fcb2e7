package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/connreg/registry/internal/dbprobe/dbtest"
)

// SchemaResult is the cost of schema discovery on a database of Tables
// tables, and of validate-schema answered from the read model.
type SchemaResult struct {
	// Skipped says why nothing was measured (no PostgreSQL binaries).
	Skipped string `json:"skipped,omitempty"`
	Tables  int    `json:"tables"`
	Columns int    `json:"columns"`
	// Discovery is GET /{id}/schema?refresh=true end to end: unseal,
	// connect, catalog query, digest, and the append when it changed.
	Discovery     Latency `json:"discovery"`
	ResponseBytes int     `json:"responseBytes"`
	// Validate is POST /validate-schema of MappedFields fields over
	// MappedTables tables, from the read model (one client, sequential).
	Validate       Latency  `json:"validate"`
	MappedTables   int      `json:"mappedTables"`
	MappedFields   int      `json:"mappedFields"`
	Errors         int64    `json:"errors"`
	ErrorSamples   []string `json:"errorSamples,omitempty"`
	StartupSeconds float64  `json:"startupSeconds"`
}

// Schema bench sizes. Discoveries stay below the per-connection rate limit
// of connection tests (TEST_RATE_LIMIT, 10 a minute by default), which
// discoveries share.
const (
	schemaTables       = 200
	schemaColumns      = 10 // per table
	schemaDiscoveries  = 8
	schemaMappedTables = 20
	schemaMappedFields = 5 // per table
)

// schemaCost starts a throwaway PostgreSQL, creates schemaTables tables in
// the connection's schema, registers it through the API and times
// discoveries and, once settle says the projector has applied them,
// validations. Without PostgreSQL's binaries it is skipped.
func schemaCost(ctx context.Context, base, runID string, discoveries int, d time.Duration, settle func() error) SchemaResult {
	r := SchemaResult{Tables: schemaTables, Columns: schemaTables * schemaColumns, MappedTables: schemaMappedTables,
		MappedFields: schemaMappedTables * schemaMappedFields}
	if _, err := os.Stat(filepath.Join(dbtest.PostgresBin, "postgres")); err != nil {
		r.Skipped = "PostgreSQL binaries not found in " + dbtest.PostgresBin
		return r
	}
	fail := func(format string, args ...any) SchemaResult {
		r.Errors++
		if len(r.ErrorSamples) < 5 {
			r.ErrorSamples = append(r.ErrorSamples, fmt.Sprintf(format, args...))
		}
		return r
	}
	start := time.Now()
	ca, err := dbtest.NewCA("bench CA")
	if err != nil {
		return fail("CA: %v", err)
	}
	pg, err := dbtest.StartPostgres(ca)
	if err != nil {
		return fail("start PostgreSQL: %v", err)
	}
	defer pg.Close()
	stmts := make([]string, 0, schemaTables)
	for i := range schemaTables {
		cols := []string{"id bigint PRIMARY KEY"}
		for j := 1; j < schemaColumns; j++ {
			typ := []string{"text", "integer", "numeric(12,2)", "timestamptz", "boolean", "varchar(64)"}[j%6]
			cols = append(cols, fmt.Sprintf("c%02d %s", j, typ))
		}
		stmts = append(stmts, fmt.Sprintf("CREATE TABLE t%03d (%s)", i, strings.Join(cols, ", ")))
	}
	if err := pg.Exec(ctx, stmts...); err != nil {
		return fail("create tables: %v", err)
	}
	r.StartupSeconds = round(time.Since(start).Seconds())

	client := newClient()
	defer client.CloseIdleConnections()
	call := func(method, path string, body any) (int, []byte, time.Duration, error) {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
		if err != nil {
			return 0, nil, 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Product-Name", "bench-schema")
		t := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, time.Since(t), err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, time.Since(t), err
	}
	status, b, _, err := call(http.MethodPost, "", map[string]any{
		"configName": "schema-" + runID, "type": "POSTGRESQL", "host": pg.Host, "port": pg.Port,
		"databaseName": pg.Database, "userName": pg.User, "password": pg.Password, "schema": pg.Schema,
	})
	if err != nil || status != http.StatusCreated {
		return fail("create the connection: %d %v %s", status, err, b)
	}
	var created struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &created); err != nil {
		return fail("create answer: %v", err)
	}
	var lat []time.Duration
	for range discoveries {
		status, b, took, err := call(http.MethodGet, "/"+created.ID+"/schema?refresh=true", nil)
		if err != nil || status != http.StatusOK {
			fail("discovery: %d %v %.200s", status, err, b)
			continue
		}
		var s struct {
			Tables []json.RawMessage `json:"tables"`
		}
		if json.Unmarshal(b, &s) != nil || len(s.Tables) != schemaTables {
			fail("discovery found %d tables, want %d", len(s.Tables), schemaTables)
			continue
		}
		r.ResponseBytes = len(b)
		lat = append(lat, took)
	}
	r.Discovery = summarize(lat)

	mapped := map[string][]string{}
	for i := range schemaMappedTables {
		var fields []string
		for j := range schemaMappedFields {
			fields = append(fields, fmt.Sprintf("c%02d", j+1))
		}
		mapped[fmt.Sprintf("t%03d", i*(schemaTables/schemaMappedTables))] = fields
	}
	body := map[string]any{"mappedFields": map[string]any{"schema-" + runID: mapped}}
	// A validation right after this process's write waits for the projector
	// (read-your-writes); what is measured here is the answer from the read model.
	if err := settle(); err != nil {
		return fail("projector: %v", err)
	}
	lat = nil
	deadline := time.Now().Add(d)
	for ctx.Err() == nil && (time.Now().Before(deadline) || len(lat) < minListSamples) && time.Now().Before(deadline.Add(10*d)) {
		status, b, took, err := call(http.MethodPost, "/validate-schema", body)
		if err != nil || status != http.StatusOK {
			fail("validate-schema: %d %v %.200s", status, err, b)
			if r.Errors > 20 {
				break
			}
			continue
		}
		lat = append(lat, took)
	}
	r.Validate = summarize(lat)
	return r
}
