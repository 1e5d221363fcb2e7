package httpapi

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// startRefusingServer serves the refusing API (validation_test.go) on a real
// loopback socket, configured as cmd/api configures its http.Server.
func startRefusingServer(t *testing.T) *httptest.Server {
	t.Helper()
	handler, logs := newRefusingAPI(t)
	srv := httptest.NewUnstartedServer(handler)
	srv.Listener = Listener(srv.Listener)
	srv.Config.MaxHeaderBytes = MaxHeaderBytes
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		if strings.Contains(logs.String(), secretPassword) {
			t.Errorf("the log quotes the password")
		}
	})
	return srv
}

type hostileCase struct {
	name       string
	method     string // POST unless set
	path       string // the collection unless set
	header     map[string]string
	body       string // sent as is; validBody() when empty and the method has a body
	wantStatus int
	wantCode   string
	wantFields []string // nil: not checked; empty: none
	wantHeader [2]string
}

// jsonBody is validBody with one member replaced by raw JSON text, so that
// escapes and bytes reach the server exactly as written.
func jsonBody(t *testing.T, member, rawValue string) string {
	t.Helper()
	b := validBody()
	b[member] = "\x01placeholder"
	s := mustJSON(t, b)
	return strings.Replace(s, `"\u0001placeholder"`, rawValue, 1)
}

func (c hostileCase) run(t *testing.T, srv *httptest.Server) {
	t.Helper()
	method, path := c.method, c.path
	if method == "" {
		method = http.MethodPost
	}
	if path == "" {
		path = "/v1/management/connections"
	}
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(method, srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Product-Name", "my-product")
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	checkAnswer(t, res, c.wantStatus, c.wantCode, c.wantFields)
	if c.wantHeader[0] != "" {
		for _, want := range strings.Split(c.wantHeader[1], ",") {
			if !strings.Contains(res.Header.Get(c.wantHeader[0]), strings.TrimSpace(want)) {
				t.Errorf("%s = %q, want it to hold %q", c.wantHeader[0], res.Header.Get(c.wantHeader[0]), want)
			}
		}
	}
}

// checkAnswer checks status, code and fields of an answer read off the wire,
// that it is the one error shape, that "fields" is an object (never null)
// and that it never quotes the password.
func checkAnswer(t *testing.T, res *http.Response, wantStatus int, wantCode string, wantFields []string) {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	for k, v := range res.Header {
		rec.Header()[k] = v
	}
	rec.Code = res.StatusCode
	rec.Body.Write(b)
	body := checkErrorShape(t, rec)
	var generic map[string]any
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	if _, isObject := generic["fields"].(map[string]any); !isObject {
		t.Errorf(`"fields" is %v, want an object ({} when empty): %s`, generic["fields"], b)
	}
	if res.StatusCode != wantStatus {
		t.Errorf("status = %d, want %d: %s", res.StatusCode, wantStatus, b)
	}
	if body.Code != wantCode {
		t.Errorf("code = %q, want %q: %s", body.Code, wantCode, b)
	}
	if wantFields != nil {
		got := make([]string, 0, len(body.Fields))
		for f := range body.Fields {
			got = append(got, f)
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(wantFields))
		if !slices.Equal(got, want) {
			t.Errorf("fields = %q, want %q: %s", got, want, b)
		}
	}
	if strings.Contains(string(b), secretPassword) || strings.Contains(string(b), "pw-Zq8") {
		t.Errorf("the answer quotes the password: %s", b)
	}
}

// TestHostileInputIsRefusedInTheErrorShape sends, over a real HTTP server,
// every kind of input the issue found accepted (NUL, ANSI escapes, CR/LF,
// bidi overrides, invalid UTF-8 even in the password, duplicate keys, weak
// If-Match, an undecodable query string) and the routes Gin answered in
// plain text: each must be refused in the error shape.
func TestHostileInputIsRefusedInTheErrorShape(t *testing.T) {
	srv := startRefusingServer(t)
	id := "/v1/management/connections/0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
	const (
		nul   = `"db\u0000x"`
		ansi  = `"db\u001b[31mred"`
		crlf  = `"db\r\nX-Injected: 1"`
		rlo   = `"db\u202ex"`
		lri   = `"db\u2066x"`
		c1    = `"db\u009bx"`
		rawLF = "\"db\nx\"" // not even valid JSON: a raw control character in a string
	)
	var cases []hostileCase
	for _, field := range []string{"configName", "host", "databaseName", "userName", "schema"} {
		for name, v := range map[string]string{"NUL": nul, "ANSI": ansi, "CRLF": crlf, "RLO": rlo, "LRI": lri, "C1": c1} {
			code := CodeInvalidRequired
			if field == "schema" {
				code = CodeBadValue
			}
			cases = append(cases, hostileCase{name: field + " " + name, body: jsonBody(t, field, v),
				wantStatus: 400, wantCode: code, wantFields: []string{field}})
		}
		cases = append(cases, hostileCase{name: field + " raw LF", body: jsonBody(t, field, rawLF),
			wantStatus: 400, wantCode: CodeBadValue, wantFields: []string{}})
	}
	patchBody := func(member, rawValue string) string {
		return strings.Replace(`{"m":1}`, `"m":1`, `"`+member+`":`+rawValue, 1)
	}
	cases = append(cases,
		// X-Product-Name: non-ASCII and bidi reach the domain; control bytes
		// are refused by net/http itself, in the error shape (see below).
		hostileCase{name: "productName bidi", body: mustJSON(t, validBody()), header: map[string]string{"X-Product-Name": "prod\u202euct"},
			wantStatus: 400, wantCode: CodeInvalidHeader, wantFields: []string{"X-Product-Name"}},

		// metadata the read model cannot store
		hostileCase{name: "metadata $where", body: jsonBody(t, "metadata", `{"$where":"v"}`),
			wantStatus: 400, wantCode: CodeBadValue, wantFields: []string{"metadata.$where"}},
		hostileCase{name: "metadata dotted key", body: jsonBody(t, "metadata", `{"a.b":"v"}`),
			wantStatus: 400, wantCode: CodeBadValue, wantFields: []string{"metadata.a.b"}},
		hostileCase{name: "metadata NUL key", body: jsonBody(t, "metadata", `{"a\u0000b":"v"}`),
			wantStatus: 400, wantCode: CodeBadValue, wantFields: []string{`metadata.a\x00b`}},
		hostileCase{name: "metadata NUL value", body: jsonBody(t, "metadata", `{"team":"a\u0000b"}`),
			wantStatus: 400, wantCode: CodeBadValue, wantFields: []string{"metadata.team"}},
		// (PATCH metadata is judged by the domain against the loaded
		// connection: TestParseSpecRefusesUnstorableMetadata covers it.)

		// invalid UTF-8: refused, never replaced; the password is not echoed
		hostileCase{name: "password invalid UTF-8", body: jsonBody(t, "password", "\"pw-Zq8\xff\xfe\""),
			wantStatus: 400, wantCode: CodeBadValue, wantFields: []string{}},
		hostileCase{name: "password lone surrogate escape", body: jsonBody(t, "password", `"pw-Zq8\ud800"`),
			wantStatus: 400, wantCode: CodeBadValue, wantFields: []string{}},
		hostileCase{name: "password lone low surrogate", body: jsonBody(t, "password", `"pw-Zq8\udc00x"`),
			wantStatus: 400, wantCode: CodeBadValue, wantFields: []string{}},
		hostileCase{name: "configName invalid UTF-8", body: jsonBody(t, "configName", "\"prod\xc3\""),
			wantStatus: 400, wantCode: CodeBadValue, wantFields: []string{}},
		hostileCase{name: "metadata key invalid UTF-8", body: jsonBody(t, "metadata", "{\"k\xff\":\"v\"}"),
			wantStatus: 400, wantCode: CodeBadValue, wantFields: []string{}},
		hostileCase{name: "PATCH password invalid UTF-8", method: http.MethodPatch, path: id, body: patchBody("password", "\"pw-Zq8\xff\""),
			wantStatus: 400, wantCode: CodeBadValue, wantFields: []string{}},

		// duplicate keys, at any depth, compared after unescaping
		hostileCase{name: "duplicate host", body: strings.Replace(mustJSON(t, validBody()), `{`, `{"host":"other.example.com",`, 1),
			wantStatus: 400, wantCode: CodeBadValue, wantFields: []string{"host"}},
		hostileCase{name: "duplicate password spelled with an escape", body: strings.Replace(mustJSON(t, validBody()), `{`, `{"p\u0061ssword":"x",`, 1),
			wantStatus: 400, wantCode: CodeBadValue, wantFields: []string{"password"}},
		hostileCase{name: "duplicate ssl.mode", body: jsonBody(t, "ssl", `{"mode":"require","mode":"disable"}`),
			wantStatus: 400, wantCode: CodeBadValue, wantFields: []string{"ssl.mode"}},
		hostileCase{name: "duplicate metadata key", body: jsonBody(t, "metadata", `{"team":"a","team":"b"}`),
			wantStatus: 400, wantCode: CodeBadValue, wantFields: []string{"metadata.team"}},
		hostileCase{name: "PATCH duplicate host", method: http.MethodPatch, path: id, body: `{"host":"a.example.com","host":"b.example.com"}`,
			wantStatus: 400, wantCode: CodeBadValue, wantFields: []string{"host"}},

		// If-Match compares strongly
		hostileCase{name: "If-Match weak on PATCH", method: http.MethodPatch, path: id, body: `{"host":"a.example.com"}`,
			header: map[string]string{"If-Match": `W/"1"`}, wantStatus: 412, wantCode: CodeStaleVersion, wantFields: []string{"If-Match"}},
		hostileCase{name: "If-Match weak on DELETE", method: http.MethodDelete, path: id,
			header: map[string]string{"If-Match": `W/"1"`}, wantStatus: 412, wantCode: CodeStaleVersion, wantFields: []string{"If-Match"}},
		hostileCase{name: "If-Match weak and malformed", method: http.MethodDelete, path: id,
			header: map[string]string{"If-Match": `W/"x"`}, wantStatus: 400, wantCode: CodeInvalidHeader, wantFields: []string{"If-Match"}},

		// query strings that do not decode
		hostileCase{name: "list ?%zz=1", method: http.MethodGet, path: "/v1/management/connections?%zz=1",
			wantStatus: 400, wantCode: CodeInvalidQueryParam, wantFields: []string{}},
		hostileCase{name: "list filter with a bad escape", method: http.MethodGet, path: "/v1/management/connections?type=POSTGRESQL&host=%G1",
			wantStatus: 400, wantCode: CodeInvalidQueryParam, wantFields: []string{}},
		hostileCase{name: "list with ; separator", method: http.MethodGet, path: "/v1/management/connections?type=POSTGRESQL;host=x",
			wantStatus: 400, wantCode: CodeInvalidQueryParam, wantFields: []string{}},
		hostileCase{name: "list filter on a metadata key that cannot exist", method: http.MethodGet, path: "/v1/management/connections?metadata.%24where=1",
			wantStatus: 400, wantCode: CodeInvalidQueryParam, wantFields: []string{"metadata.$where"}},
		hostileCase{name: "get ?%zz", method: http.MethodGet, path: id + "?%zz",
			wantStatus: 400, wantCode: CodeInvalidQueryParam, wantFields: []string{}},

		// routes Gin answered in plain text or with "fields": null
		hostileCase{name: "unknown route", method: http.MethodGet, path: "/nope",
			wantStatus: 404, wantCode: CodeNotFound, wantFields: []string{}},
		hostileCase{name: "trailing slash", method: http.MethodGet, path: "/v1/management/connections/",
			wantStatus: 404, wantCode: CodeNotFound, wantFields: []string{}},
		hostileCase{name: "method not allowed", method: http.MethodPut, path: "/v1/management/connections",
			wantStatus: 405, wantCode: CodeMethodNotAllowed, wantFields: []string{}, wantHeader: [2]string{"Allow", "GET, POST"}},
		hostileCase{name: "method not allowed on an id", method: http.MethodPost, path: id,
			wantStatus: 405, wantCode: CodeMethodNotAllowed, wantFields: []string{}, wantHeader: [2]string{"Allow", "GET, PATCH, DELETE"}},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, srv) })
	}
}

// TestServerLevelErrorsAreJSON sends what net/http refuses before any
// handler runs, on a raw connection, and reads the answer off the wire.
func TestServerLevelErrorsAreJSON(t *testing.T) {
	srv := startRefusingServer(t)
	addr := srv.Listener.Addr().String()
	cases := []struct {
		name       string
		request    string
		wantStatus int
		wantCode   string
	}{
		{"headers over MaxHeaderBytes", "GET /v1/management/connections HTTP/1.1\r\nHost: x\r\nX-Big: " +
			strings.Repeat("b", MaxHeaderBytes+8192) + "\r\n\r\n", 431, CodeHeadersTooLarge},
		{"garbage request line", "GARBAGE\r\n\r\n", 400, CodeProtocol},
		{"HTTP/1.1 without Host", "GET /v1/management/connections HTTP/1.1\r\n\r\n", 400, CodeProtocol},
		{"undecodable path", "GET /v1/management/connections/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, CodeProtocol},
		{"ANSI escape in X-Product-Name", "GET /v1/management/connections HTTP/1.1\r\nHost: x\r\nX-Product-Name: a\x1b[31mb\r\n\r\n", 400, CodeProtocol},
		{"NUL in a header", "GET /v1/management/connections HTTP/1.1\r\nHost: x\r\nX-Product-Name: a\x00b\r\n\r\n", 400, CodeProtocol},
		{"bad header name", "GET /v1/management/connections HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400, CodeProtocol},
		{"unknown protocol version", "GET / HTTP/9.9\r\nHost: x\r\n\r\n", 505, "REG-0505"},
		{"unknown Expect", "POST /v1/management/connections HTTP/1.1\r\nHost: x\r\nExpect: bogus\r\nContent-Length: 2\r\n\r\n{}", 417, "REG-0417"},
		{"unsupported transfer encoding", "POST /v1/management/connections HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "REG-0501"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, tc.request); err != nil {
				t.Fatal(err)
			}
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			checkAnswer(t, res, tc.wantStatus, tc.wantCode, []string{})
		})
	}
	// A well-formed request on the same listener is answered as usual.
	res, err := http.Get(srv.URL + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", res, err)
	}
	res.Body.Close()
}
