package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/readmodel"
)

// fuzzMarker is part of every seed password: an answer or log holding it
// quotes the password (no message of the API contains it).
const fuzzMarker = "Zq8#"

func testContext(req *http.Request) *gin.Context {
	gin.SetMode(gin.ReleaseMode)
	c, _ := gin.CreateTestContext(httptest.NewRecorder())
	c.Request = req
	return c
}

// checkRefusal checks what every refused input must give: one of our error
// types, a 4xx status, a body in the error shape with fields an object, and
// no trace of a password carrying fuzzMarker.
func checkRefusal(t *testing.T, err error, body []byte) {
	t.Helper()
	var reqErr *requestError
	var viol *domain.ValidationError
	var notResent *domain.SecretNotResentError // a PATCH moving the connection without its password
	if !errors.As(err, &reqErr) && !errors.As(err, &viol) && !errors.As(err, &notResent) {
		t.Fatalf("refusal of type %T, not one of ours: %v", err, err)
	}
	status, eb := classify(err)
	if status < 400 || status > 499 || eb.Code == "" || eb.Title == "" || eb.Message == "" {
		t.Fatalf("refusal answered %d %+v", status, eb)
	}
	out, merr := json.Marshal(eb)
	if merr != nil || !bytes.Contains(out, []byte(`"fields":{`)) {
		t.Fatalf("error body %s (%v)", out, merr)
	}
	if bytes.Contains(body, []byte(fuzzMarker)) && bytes.Contains(out, []byte(fuzzMarker)) {
		t.Fatalf("the answer quotes the password: %s", out)
	}
}

func createSeeds() []string {
	pm := testPEM()
	ssl, _ := json.Marshal(map[string]any{"mode": "require", "cert": pm.cert, "key": pm.key})
	return []string{
		`{"configName":"production-db","type":"POSTGRESQL","host":"db.example.com","port":5432,"databaseName":"mydatabase","userName":"dbuser","password":"pw-Zq8#one","schema":"public","metadata":{"team":"data"}}`,
		`{"configName":"orders","type":"mysql","host":"10.0.0.1","port":3306,"databaseName":"o","userName":"u","password":"pw-Zq8#\u00e9","ssl":` + string(ssl) + `}`,
		`{"configName":"a","configName":"b","password":"pw-Zq8#\ud800"}`,
		`{"configName":"prod\u202e","host":"db\u0000","metadata":{"$where":"v","a.b":"\u0000"}}`,
		"{\"password\":\"pw-Zq8#\xff\"}",
		`{"ssl":{"mode":"require","mode":"x"},"port":"5432","bogus":1}`,
		`[]`, `null`, `{"metadata":{"team":{"nested":1}}}`,
	}
}

// FuzzCreateBody decodes arbitrary create bodies as the API does (content
// type, size, syntax, encoding, duplicate keys, strict members, then the
// domain). Properties: no panic; a refusal is one of our error types with a
// 4xx answer in the error shape that never quotes the password; an accepted
// body keeps the password byte for byte as valid UTF-8, and round-trips:
// the accepted spec, written as a body again, is accepted as the same spec.
func FuzzCreateBody(f *testing.F) {
	for _, s := range createSeeds() {
		f.Add([]byte(s), "my-product")
	}
	f.Add([]byte(createSeeds()[0]), "prod\u202euct")
	f.Fuzz(func(t *testing.T, body []byte, product string) {
		decode := func(body []byte, product string) (domain.Spec, domain.Secrets, error) {
			req := httptest.NewRequest(http.MethodPost, "/v1/management/connections", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header["X-Product-Name"] = []string{product}
			in, err := createInput(testContext(req))
			if err != nil {
				return domain.Spec{}, domain.Secrets{}, err
			}
			return domain.ParseSpec(in)
		}
		spec, secrets, err := decode(body, product)
		if err != nil {
			checkRefusal(t, err, body)
			return
		}
		if !utf8.Valid(secrets.Password) {
			t.Fatalf("accepted a password that is not valid UTF-8")
		}
		var sent struct {
			Password string `json:"password"`
		}
		if json.Unmarshal(body, &sent) != nil || sent.Password != string(secrets.Password) {
			t.Fatalf("the password was altered on the way")
		}
		again := map[string]any{"configName": spec.ConfigName, "type": spec.Engine, "host": spec.Host, "port": spec.Port,
			"databaseName": spec.DatabaseName, "userName": spec.UserName, "password": string(secrets.Password),
			"schema": spec.Schema, "metadata": spec.Metadata}
		if spec.SSL != nil {
			again["ssl"] = map[string]any{"mode": spec.SSL.Mode, "ca": spec.SSL.CA, "cert": spec.SSL.Cert, "key": string(secrets.SSLKey)}
		}
		b, err := json.Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		spec2, secrets2, err := decode(b, spec.ProductName)
		if err != nil || spec2.Fingerprint() != spec.Fingerprint() || !bytes.Equal(secrets2.Password, secrets.Password) {
			t.Fatalf("an accepted body does not round-trip: %v\n%s", err, b)
		}
	})
}

// FuzzPatchBody decodes arbitrary PATCH bodies and applies them to a
// connection. Properties: no panic; a refusal, by the decoder or by the
// domain, is one of our error types answered with a 4xx in the error shape;
// an accepted patch keeps the password byte for byte as valid UTF-8.
func FuzzPatchBody(f *testing.F) {
	for _, s := range []string{
		`{"host":"db2.example.com","password":"pw-Zq8#rotated","metadata":{"team":"platform"}}`,
		`{"ssl":null,"schema":"","port":1}`, `{"ssl":{"mode":"disable"}}`, `{"productName":"x"}`,
		`{"host":"a","host":"b"}`, "{\"password\":\"pw-Zq8#\xff\"}", `{"password":"pw-Zq8#\udc00"}`,
		`{"metadata":{"$where":"v"}}`, `{"configName":"new\u2066name"}`, `{}`, `null`,
	} {
		f.Add([]byte(s))
	}
	base, _, err := domain.ParseSpec(domain.SpecInput{ProductName: "p", ConfigName: "orders", Type: "POSTGRESQL",
		Host: "h", Port: 5432, DatabaseName: "d", UserName: "u", Password: []byte("pw")})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPatch, "/v1/management/connections/x", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		var pr patchRequest
		violations := &domain.ValidationError{}
		if err := readJSONBody(httptest.NewRecorder(), req, &pr); err != nil && !errors.As(err, &violations) {
			checkRefusal(t, err, body)
			return
		}
		in, more := pr.patchInput()
		violations.Merge(more)
		if len(violations.Fields) > 0 {
			checkRefusal(t, violations, body)
			return
		}
		conn, err := domain.Create("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", domain.DefaultOrganization, base,
			domain.Credentials{Password: domain.SealedSecret{Scheme: "t", KeyName: "k", Ciphertext: "c"}}, domain.Origin{Actor: "f"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, secrets, err := conn.ParsePatch(in)
		if err != nil {
			checkRefusal(t, err, body)
			return
		}
		if secrets.Password != nil && !utf8.Valid(secrets.Password) {
			t.Fatalf("accepted a password that is not valid UTF-8")
		}
	})
}

var sorts = []string{readmodel.SortCreatedAt, readmodel.SortUpdatedAt, readmodel.SortConfigName}

// listValues writes an accepted query back as the query string that asks
// for it.
func listValues(q readmodel.ListQuery) url.Values {
	v := url.Values{"limit": {strconv.Itoa(q.Limit)}, "sortBy": {q.SortBy}, "sortOrder": {"desc"}}
	if q.Ascending {
		v.Set("sortOrder", "asc")
	}
	if q.After != nil {
		v.Set("cursor", encodeCursor(q, *q.After))
	} else {
		v.Set("page", strconv.Itoa(q.Page))
	}
	for name, s := range map[string]string{"type": q.Type, "host": q.Host, "databaseName": q.DatabaseName,
		"configName": q.ConfigNamePrefix, "health": q.Health} {
		if s != "" {
			v.Set(name, s)
		}
	}
	if q.CreatedFrom != nil {
		v.Set("createdFrom", q.CreatedFrom.Format(time.RFC3339Nano))
	}
	if q.CreatedBefore != nil {
		v.Set("createdTo", q.CreatedBefore.Add(-time.Millisecond).Format(time.RFC3339Nano))
	}
	for k, s := range q.Metadata {
		v.Set("metadata."+k, s)
	}
	return v
}

func sameQuery(a, b readmodel.ListQuery) bool {
	sameTime := func(x, y *time.Time) bool { return x == nil && y == nil || x != nil && y != nil && x.Equal(*y) }
	sameCursor := a.After == nil && b.After == nil || a.After != nil && b.After != nil &&
		a.After.Time.Equal(b.After.Time) && a.After.Name == b.After.Name && a.After.ID == b.After.ID
	if len(a.Metadata) != len(b.Metadata) {
		return false
	}
	for k, v := range a.Metadata {
		if b.Metadata[k] != v {
			return false
		}
	}
	return a.ProductName == b.ProductName && a.Health == b.Health && a.Type == b.Type && a.Host == b.Host && a.DatabaseName == b.DatabaseName &&
		a.ConfigNamePrefix == b.ConfigNamePrefix && sameTime(a.CreatedFrom, b.CreatedFrom) &&
		sameTime(a.CreatedBefore, b.CreatedBefore) && a.SortBy == b.SortBy && a.Ascending == b.Ascending &&
		(a.After != nil || a.Page == b.Page) && a.Limit == b.Limit && sameCursor
}

// FuzzListQuery parses arbitrary list query strings as the API does (the
// decodable-query check, then parseListQuery). Properties: no panic; a
// refusal is a 400 in the error shape with a query-parameter, limit or
// header code; an accepted query is within bounds and round-trips: written
// back as a query string, it parses to the same query.
func FuzzListQuery(f *testing.F) {
	cursor := encodeCursor(readmodel.ListQuery{SortBy: readmodel.SortConfigName, Ascending: true},
		readmodel.Cursor{Name: "orders", ID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"})
	for _, s := range []string{
		"", "type=POSTGRESQL&metadata.team=data&sortBy=configName&sortOrder=asc&limit=20",
		"page=2&limit=100&host=db&databaseName=x&configName=pro&createdFrom=2026-01-01&createdTo=2026-12-31T10:00:00Z",
		"sortBy=configName&sortOrder=asc&cursor=" + cursor, "limit=101", "page=0", "%zz=1", "type=POSTGRESQL;host=x",
		"metadata.$where=1", "metadata.=x", "cursor=abc", "bogus=1", "limit=1&limit=2", "health=failing",
	} {
		f.Add(s, "my-product")
	}
	f.Fuzz(func(t *testing.T, raw, product string) {
		parse := func(raw, product string) (readmodel.ListQuery, error, bool) {
			req := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/v1/management/connections", RawQuery: raw},
				Header: http.Header{"X-Product-Name": {product}}}
			c := testContext(req)
			decodableQuery(slog.New(slog.NewTextHandler(io.Discard, nil)))(c)
			if c.IsAborted() {
				return readmodel.ListQuery{}, nil, true
			}
			q, err := parseListQuery(c.Request.URL.Query(), c.Request.Header)
			return q, err, false
		}
		q, err, refusedEarly := parse(raw, product)
		if refusedEarly {
			if _, perr := url.ParseQuery(raw); perr == nil {
				t.Fatalf("a decodable query string was refused: %q", raw)
			}
			return
		}
		if err != nil {
			checkRefusal(t, err, nil)
			if _, eb := classify(err); eb.Code != CodeInvalidQueryParam && eb.Code != CodeLimitTooLarge && eb.Code != CodeInvalidHeader {
				t.Fatalf("list refusal with code %s", eb.Code)
			}
			return
		}
		if q.Limit < 1 || q.Limit > MaxLimit || q.Page < 1 || !strings.Contains(strings.Join(sorts, ","), q.SortBy) {
			t.Fatalf("accepted an out-of-bounds query: %+v", q)
		}
		if q.CreatedBefore != nil && (q.CreatedBefore.Year() < 1 || q.CreatedBefore.Year() > 9999) {
			return // not writable back as RFC 3339
		}
		if q.CreatedFrom != nil && (q.CreatedFrom.Year() < 1 || q.CreatedFrom.Year() > 9999) {
			return
		}
		back := listValues(q).Encode()
		q2, err, refused := parse(back, q.ProductName)
		if refused || err != nil || !sameQuery(q, q2) {
			t.Fatalf("an accepted query does not round-trip: %v\n%q -> %q\n%+v\n%+v", err, raw, back, q, q2)
		}
	})
}

// FuzzCursor decodes arbitrary cursors under every sort. Properties: no
// panic; a cursor of another sort or an altered one is refused; an accepted
// cursor names a document and round-trips through encodeCursor.
func FuzzCursor(f *testing.F) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 123456789, time.UTC)
	for i, sortBy := range sorts {
		q := readmodel.ListQuery{SortBy: sortBy, Ascending: i%2 == 0}
		f.Add(encodeCursor(q, readmodel.Cursor{Time: at, Name: "orders", ID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}), uint8(i), i%2 == 0)
	}
	f.Add("", uint8(0), false)
	f.Add("eyJzIjoiY3JlYXRlZEF0In0", uint8(0), false) // {"s":"createdAt"}: no id
	f.Add("!!!", uint8(1), true)
	f.Fuzz(func(t *testing.T, s string, sortIndex uint8, asc bool) {
		q := readmodel.ListQuery{SortBy: sorts[int(sortIndex)%len(sorts)], Ascending: asc}
		cur, err := decodeCursor(s, q)
		if err != nil {
			return
		}
		if cur.ID == "" {
			t.Fatalf("accepted a cursor without an id: %q", s)
		}
		if cur.Time.Year() < 0 || cur.Time.Year() > 9999 {
			return // not writable back by encoding/json
		}
		again, err := decodeCursor(encodeCursor(q, cur), q)
		if err != nil || !again.Time.Equal(cur.Time) || again.Name != cur.Name || again.ID != cur.ID {
			t.Fatalf("an accepted cursor does not round-trip: %v\n%+v\n%+v", err, cur, again)
		}
		other := q
		other.Ascending = !q.Ascending
		if _, err := decodeCursor(encodeCursor(q, cur), other); err == nil {
			t.Fatalf("a cursor was accepted under another sort order")
		}
	})
}
