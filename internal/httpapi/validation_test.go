package httpapi

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/auth"
	"github.com/connreg/registry/readmodel"
)

// The collaborators below are not stand-ins for the real event store,
// sealer or read model: they are assertions. Every request in this file is
// refused, so none of them may ever be called; a call fails the test. The
// create command itself is the real commands.CreateHandler, because for a
// request whose JSON decodes cleanly the domain validation (domain.ParseSpec)
// runs inside it, before it seals or appends anything.

type sealerMustNotRun struct{ t *testing.T }

func (s sealerMustNotRun) Seal(context.Context, string, []byte) (domain.SealedSecret, error) {
	s.t.Errorf("validation let a refused request through to the sealer")
	return domain.SealedSecret{}, errors.New("test: the sealer must not be reached")
}

type storeMustNotRun struct{ t *testing.T }

func (s storeMustNotRun) Append(context.Context, commands.Append) (uint64, error) {
	s.t.Errorf("validation let a refused request through to the event store")
	return 0, errors.New("test: the event store must not be reached")
}

type readsMustNotRun struct{ t *testing.T }

func (r readsMustNotRun) Get(context.Context, string) (*readmodel.Document, error) {
	r.t.Errorf("a create request read the read model")
	return nil, errors.New("test: the read model must not be reached")
}

func (r readsMustNotRun) List(context.Context, readmodel.ListQuery) (readmodel.ListResult, error) {
	r.t.Errorf("a create request listed the read model")
	return readmodel.ListResult{}, errors.New("test: the read model must not be reached")
}

func (r readsMustNotRun) Load(context.Context, string) ([]events.Event, uint64, error) {
	r.t.Errorf("a create request loaded a history")
	return nil, 0, errors.New("test: the history must not be reached")
}

func (r readsMustNotRun) WaitFor(context.Context, uint64) error {
	r.t.Errorf("a create request waited for the projection")
	return errors.New("test: the projection must not be reached")
}

type updateMustNotRun struct{ t *testing.T }

func (u updateMustNotRun) Handle(context.Context, commands.UpdateConnection) (commands.Result, error) {
	u.t.Errorf("a create request ran the update command")
	return commands.Result{}, errors.New("test: the update command must not be reached")
}

type testMustNotRun struct{ t *testing.T }

type secretsMustNotRun struct{ t *testing.T }

func (d secretsMustNotRun) Handle(context.Context, commands.ReadSealedSecrets) (commands.SealedSecrets, error) {
	d.t.Error("a refused request reached the secrets command")
	return commands.SealedSecrets{}, errors.New("secrets must not run")
}

func (d testMustNotRun) Handle(context.Context, commands.TestConnection) (commands.ProbeResult, error) {
	d.t.Error("a refused request reached the test command")
	return commands.ProbeResult{}, errors.New("test must not run")
}

func (d testMustNotRun) Probe(context.Context, commands.ProbeTarget) (commands.ProbeResult, error) {
	d.t.Error("a refused request reached the prober")
	return commands.ProbeResult{}, errors.New("probe must not run")
}

type discoverMustNotRun struct{ t *testing.T }

func (d discoverMustNotRun) Handle(context.Context, commands.DiscoverSchema) (commands.Discovery, error) {
	d.t.Error("a refused request reached the discover command")
	return commands.Discovery{}, errors.New("discover must not run")
}

type deleteMustNotRun struct{ t *testing.T }

func (d deleteMustNotRun) Handle(context.Context, commands.DeleteConnection) (commands.Result, error) {
	d.t.Errorf("a create request ran the delete command")
	return commands.Result{}, errors.New("test: the delete command must not be reached")
}

// newRefusingAPI builds the API around the real create command whose every
// downstream step fails the test if reached. It returns the handler and the
// buffer its logs go to.
func newRefusingAPI(t *testing.T) (http.Handler, *bytes.Buffer) {
	t.Helper()
	reads := readsMustNotRun{t}
	create, err := commands.NewCreateHandler(commands.CreateDeps{
		Store:   storeMustNotRun{t},
		History: reads,
		Sealer:  sealerMustNotRun{t},
		NewID: func() string {
			t.Errorf("validation let a refused request through to id generation")
			return "00000000-0000-0000-0000-000000000000"
		},
		KeyedID: func(string) string {
			t.Errorf("validation let a refused request through to keyed id generation")
			return "00000000-0000-0000-0000-000000000000"
		},
		Now: time.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	queries, err := readmodel.NewQueries(reads, reads, reads, slog.New(slog.DiscardHandler), 0)
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	api, err := New(Deps{
		Create:  create,
		Update:  updateMustNotRun{t},
		Delete:  deleteMustNotRun{t},
		Test:    testMustNotRun{t},
		Prober:  testMustNotRun{t},
		Queries: queries,
		Secrets: secretsMustNotRun{t},
		Auth:    auth.Off{},
		Logger:  slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),

		Discover: discoverMustNotRun{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	return api.Handler(), logs
}

// Secrets every request carries; no answer and no log line may hold them.
const secretPassword = "pw-Zq8#never-echo-this"

type pemMaterial struct {
	cert string
	key  string // PKCS#8
}

var testPEM = sync.OnceValue(func() pemMaterial {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return pemMaterial{
		cert: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		key:  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})),
	}
})

// keyFragments are the base64 lines of the private key: an answer holding
// any of them quotes the key.
func keyFragments() []string {
	var out []string
	for _, line := range strings.Split(testPEM().key, "\n") {
		if line != "" && !strings.HasPrefix(line, "-----") {
			out = append(out, line)
		}
	}
	return out
}

func validBody() map[string]any {
	return map[string]any{
		"configName":   "production-db",
		"type":         "POSTGRESQL",
		"host":         "db.example.com",
		"port":         5432,
		"databaseName": "mydatabase",
		"userName":     "dbuser",
		"password":     secretPassword,
	}
}

type createCase struct {
	name        string
	header      *string   // X-Product-Name; nil sends "My-Product"
	noHeader    bool      // send no X-Product-Name at all
	extraHeader [2]string // another header to send: name, value
	contentType *string   // nil sends "application/json"; "" sends none
	raw         string    // the body as is, when set
	edit        func(body map[string]any)
	wantStatus  int    // 400 unless set
	wantCode    string // alternatives separated by '|'
	wantFields  []string
}

func str(s string) *string { return &s }

func raw(s string) json.RawMessage { return json.RawMessage(s) }

// accepted checks a value the contract allows without letting the request
// through: the edit is applied, the sentinel field is removed, and the answer
// must refuse the sentinel alone.
func accepted(name, sentinel string, edit func(map[string]any)) createCase {
	return createCase{
		name: name,
		edit: func(b map[string]any) {
			edit(b)
			delete(b, sentinel)
		},
		wantCode:   CodeInvalidRequired,
		wantFields: []string{sentinel},
	}
}

func set(key string, value any) func(map[string]any) {
	return func(b map[string]any) { b[key] = value }
}

func setSSL(ssl map[string]any) func(map[string]any) {
	return func(b map[string]any) { b["ssl"] = ssl }
}

func (c createCase) request(t *testing.T) *http.Request {
	t.Helper()
	body := c.raw
	if body == "" {
		b := validBody()
		if c.edit != nil {
			c.edit(b)
		}
		enc, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		body = string(enc)
	}
	req := httptest.NewRequest(http.MethodPost, "/v1/management/connections", strings.NewReader(body))
	switch {
	case c.contentType == nil:
		req.Header.Set("Content-Type", "application/json")
	case *c.contentType != "":
		req.Header.Set("Content-Type", *c.contentType)
	}
	if c.extraHeader[0] != "" {
		req.Header.Set(c.extraHeader[0], c.extraHeader[1])
	}
	switch {
	case c.noHeader:
	case c.header == nil:
		req.Header.Set("X-Product-Name", "My-Product")
	default:
		req.Header.Set("X-Product-Name", *c.header)
	}
	return req
}

func TestCreateRefusesInvalidRequests(t *testing.T) {
	pm := testPEM()
	otherEngineModes := func(engine string, mode string) createCase {
		return createCase{
			name:       "ssl.mode " + mode + " refused for " + engine,
			edit:       func(b map[string]any) { b["type"] = engine; b["ssl"] = map[string]any{"mode": mode} },
			wantCode:   CodeInvalidSSLMode,
			wantFields: []string{"ssl.mode"},
		}
	}
	cases := []createCase{
		// X-Product-Name
		{name: "header missing", noHeader: true, wantCode: CodeInvalidHeader, wantFields: []string{"X-Product-Name"}},
		{name: "header empty", header: str(""), wantCode: CodeInvalidHeader, wantFields: []string{"X-Product-Name"}},
		{name: "header blank", header: str("   "), wantCode: CodeInvalidHeader, wantFields: []string{"X-Product-Name"}},
		{name: "header 101 chars", header: str(strings.Repeat("p", 101)), wantCode: CodeInvalidHeader, wantFields: []string{"X-Product-Name"}},
		{name: "header with space", header: str("my product"), wantCode: CodeInvalidHeader, wantFields: []string{"X-Product-Name"}},
		{name: "header with dot", header: str("my.product"), wantCode: CodeInvalidHeader, wantFields: []string{"X-Product-Name"}},
		{name: "header with slash", header: str("my/product"), wantCode: CodeInvalidHeader, wantFields: []string{"X-Product-Name"}},
		{name: "header non-ASCII", header: str("prödukt"), wantCode: CodeInvalidHeader, wantFields: []string{"X-Product-Name"}},
		withHeader(accepted("header trimmed is accepted", "userName", func(map[string]any) {}), "  My_Product-1  "),
		withHeader(accepted("header 100 chars is accepted", "userName", func(map[string]any) {}), strings.Repeat("P", 100)),
		withHeader(accepted("header 1 char is accepted", "userName", func(map[string]any) {}), "p"),
		{name: "Idempotency-Key 256 chars", extraHeader: [2]string{"Idempotency-Key", strings.Repeat("i", 256)},
			wantCode: CodeInvalidHeader, wantFields: []string{"Idempotency-Key"}},
		{name: "header and body refused together", header: str("bad product"), edit: set("configName", "x"),
			wantCode: CodeInvalidHeader, wantFields: []string{"X-Product-Name", "configName"}},

		// media type and size
		{name: "no content type", contentType: str(""), wantStatus: http.StatusUnsupportedMediaType, wantCode: CodeUnsupportedMedia},
		{name: "text/plain", contentType: str("text/plain"), wantStatus: http.StatusUnsupportedMediaType, wantCode: CodeUnsupportedMedia},
		{name: "form", contentType: str("application/x-www-form-urlencoded"), wantStatus: http.StatusUnsupportedMediaType, wantCode: CodeUnsupportedMedia},
		{name: "json suffix type", contentType: str("application/merge-patch+json"), wantStatus: http.StatusUnsupportedMediaType, wantCode: CodeUnsupportedMedia},
		{name: "unparsable content type", contentType: str("application/json;;"), wantStatus: http.StatusUnsupportedMediaType, wantCode: CodeUnsupportedMedia},
		{name: "415 before the header check", contentType: str("text/plain"), noHeader: true, wantStatus: http.StatusUnsupportedMediaType, wantCode: CodeUnsupportedMedia},
		withContentType(accepted("json with charset is accepted", "userName", func(map[string]any) {}), "application/json; charset=utf-8"),
		withContentType(accepted("json in capitals is accepted", "userName", func(map[string]any) {}), "Application/JSON"),
		{name: "body one byte over 1 MiB", raw: oversizeBody(MaxBodyBytes + 1), wantStatus: http.StatusRequestEntityTooLarge, wantCode: CodeBodyTooLarge},
		{name: "body of 2 MiB", raw: oversizeBody(2 * MaxBodyBytes), wantStatus: http.StatusRequestEntityTooLarge, wantCode: CodeBodyTooLarge},
		{name: "body of exactly 1 MiB is read", raw: paddedBody(t, MaxBodyBytes), wantCode: CodeInvalidRequired, wantFields: []string{"userName"}},

		// malformed JSON
		{name: "empty body", raw: " ", wantCode: CodeBadValue},
		{name: "not JSON", raw: "configName=production-db", wantCode: CodeBadValue},
		{name: "truncated JSON", raw: `{"configName":"production-db","password":"` + secretPassword + `"`, wantCode: CodeBadValue},
		{name: "single quotes", raw: `{'configName':'production-db'}`, wantCode: CodeBadValue},
		{name: "trailing comma", raw: `{"configName":"production-db",}`, wantCode: CodeBadValue},
		{name: "body is an array", raw: `[{"configName":"production-db"}]`, wantCode: CodeBadValue},
		{name: "body is a string", raw: `"` + secretPassword + `"`, wantCode: CodeBadValue},
		{name: "two objects", raw: mustJSON(t, validBody()) + mustJSON(t, validBody()), wantCode: CodeBadValue},
		{name: "trailing closing brace", raw: mustJSON(t, validBody()) + "}", wantCode: CodeBadValue},
		{name: "trailing closing bracket", raw: mustJSON(t, validBody()) + "]", wantCode: CodeBadValue},
		// null decodes as an empty object: every required field is missing.
		{name: "body is null", raw: "null", wantCode: CodeBadValue, wantFields: []string{}},

		// unknown fields
		{name: "unknown field", edit: set("bogus", "x"), wantCode: CodeUnexpectedField, wantFields: []string{"bogus"}},
		{name: "unknown field id", edit: set("id", "a1b2c3d4-e5f6-7890-abcd-ef1234567890"), wantCode: CodeUnexpectedField, wantFields: []string{"id"}},
		{name: "unknown field productName", edit: set("productName", "other"), wantCode: CodeUnexpectedField, wantFields: []string{"productName"}},
		{name: "unknown field in ssl", edit: setSSL(map[string]any{"mode": "require", "verify": true}), wantCode: CodeUnexpectedField, wantFields: []string{"ssl.verify"}},
		// The body is camelCase: a differently cased name is not a field of
		// the request (encoding/json matches names case-insensitively).
		{name: "field name in another case", edit: func(b map[string]any) {
			b["ConfigName"] = b["configName"]
			delete(b, "configName")
		}, wantCode: CodeUnexpectedField, wantFields: []string{"ConfigName", "configName"}},
		{name: "field name in capitals", edit: func(b map[string]any) {
			b["PASSWORD"] = b["password"]
			delete(b, "password")
		}, wantCode: CodeUnexpectedField, wantFields: []string{"PASSWORD", "password"}},

		// wrong JSON types
		{name: "configName number", edit: set("configName", 123), wantCode: CodeBadValue, wantFields: []string{"configName"}},
		{name: "type boolean", edit: set("type", true), wantCode: CodeBadValue, wantFields: []string{"type"}},
		{name: "host array", edit: set("host", []string{"db.example.com"}), wantCode: CodeBadValue, wantFields: []string{"host"}},
		{name: "databaseName object", edit: set("databaseName", map[string]any{}), wantCode: CodeBadValue, wantFields: []string{"databaseName"}},
		{name: "userName number", edit: set("userName", 1), wantCode: CodeBadValue, wantFields: []string{"userName"}},
		{name: "password number", edit: set("password", 12345678), wantCode: CodeBadValue, wantFields: []string{"password"}},
		{name: "password array", edit: set("password", []string{secretPassword}), wantCode: CodeBadValue, wantFields: []string{"password"}},
		{name: "schema number", edit: set("schema", 1), wantCode: CodeBadValue, wantFields: []string{"schema"}},
		{name: "ssl string", edit: set("ssl", "require"), wantCode: CodeBadValue, wantFields: []string{"ssl"}},
		{name: "ssl array", edit: set("ssl", []any{}), wantCode: CodeBadValue, wantFields: []string{"ssl"}},
		{name: "ssl.mode number", edit: setSSL(map[string]any{"mode": 1}), wantCode: CodeBadValue, wantFields: []string{"ssl.mode"}},
		{name: "ssl.ca number", edit: setSSL(map[string]any{"mode": "require", "ca": 1}), wantCode: CodeBadValue, wantFields: []string{"ssl.ca"}},
		{name: "ssl.cert array", edit: setSSL(map[string]any{"mode": "require", "cert": []any{}, "key": pm.key}), wantCode: CodeBadValue, wantFields: []string{"ssl.cert"}},
		{name: "ssl.key object", edit: setSSL(map[string]any{"mode": "require", "cert": pm.cert, "key": map[string]any{"pem": pm.key}}), wantCode: CodeBadValue, wantFields: []string{"ssl.key"}},

		// configName
		{name: "configName missing", edit: func(b map[string]any) { delete(b, "configName") }, wantCode: CodeInvalidRequired, wantFields: []string{"configName"}},
		{name: "configName null", edit: set("configName", nil), wantCode: CodeInvalidRequired, wantFields: []string{"configName"}},
		{name: "configName empty", edit: set("configName", ""), wantCode: CodeInvalidRequired, wantFields: []string{"configName"}},
		{name: "configName blank", edit: set("configName", "   "), wantCode: CodeInvalidRequired, wantFields: []string{"configName"}},
		{name: "configName 2 chars", edit: set("configName", "ab"), wantCode: CodeInvalidRequired, wantFields: []string{"configName"}},
		{name: "configName 2 chars after trim", edit: set("configName", " ab "), wantCode: CodeInvalidRequired, wantFields: []string{"configName"}},
		{name: "configName 101 chars", edit: set("configName", strings.Repeat("c", 101)), wantCode: CodeInvalidRequired, wantFields: []string{"configName"}},
		{name: "configName with space", edit: set("configName", "prod db"), wantCode: CodeInvalidRequired, wantFields: []string{"configName"}},
		{name: "configName with dot", edit: set("configName", "prod.db"), wantCode: CodeInvalidRequired, wantFields: []string{"configName"}},
		{name: "configName non-ASCII", edit: set("configName", "bäse"), wantCode: CodeInvalidRequired, wantFields: []string{"configName"}},
		accepted("configName 3 chars is accepted", "userName", set("configName", "abc")),
		accepted("configName 100 chars is accepted", "userName", set("configName", strings.Repeat("c", 100))),
		accepted("configName padded is accepted", "userName", set("configName", "  prod_DB-1  ")),

		// type
		{name: "type missing", edit: func(b map[string]any) { delete(b, "type") }, wantCode: CodeInvalidRequired, wantFields: []string{"type"}},
		{name: "type empty", edit: set("type", ""), wantCode: CodeInvalidRequired, wantFields: []string{"type"}},
		{name: "type postgres", edit: set("type", "postgres"), wantCode: CodeInvalidRequired, wantFields: []string{"type"}},
		{name: "type SQLSERVER", edit: set("type", "SQLSERVER"), wantCode: CodeInvalidRequired, wantFields: []string{"type"}},
		{name: "type DB2", edit: set("type", "DB2"), wantCode: CodeInvalidRequired, wantFields: []string{"type"}},
		accepted("type lower case is accepted", "userName", set("type", "postgresql")),
		accepted("type mixed case is accepted", "userName", set("type", "Sql_Server")),

		// host
		{name: "host missing", edit: func(b map[string]any) { delete(b, "host") }, wantCode: CodeInvalidRequired, wantFields: []string{"host"}},
		{name: "host empty", edit: set("host", ""), wantCode: CodeInvalidRequired, wantFields: []string{"host"}},
		{name: "host with scheme", edit: set("host", "postgres://db.example.com"), wantCode: CodeInvalidRequired, wantFields: []string{"host"}},
		{name: "host with path", edit: set("host", "db.example.com/mydb"), wantCode: CodeInvalidRequired, wantFields: []string{"host"}},
		{name: "host with port", edit: set("host", "db.example.com:5432"), wantCode: CodeInvalidRequired, wantFields: []string{"host"}},
		{name: "host with credentials", edit: set("host", "dbuser:"+secretPassword+"@db.example.com"), wantCode: CodeInvalidRequired, wantFields: []string{"host"}},
		{name: "host with space", edit: set("host", "db example.com"), wantCode: CodeInvalidRequired, wantFields: []string{"host"}},
		{name: "host bracketed IPv6", edit: set("host", "[::1]"), wantCode: CodeInvalidRequired, wantFields: []string{"host"}},
		{name: "host IPv6 zone hiding a path", edit: set("host", "fe80::1%eth0/mydb"), wantCode: CodeInvalidRequired, wantFields: []string{"host"}},
		{name: "host IPv6 zone hiding credentials", edit: set("host", "fe80::1%dbuser:pw@db"), wantCode: CodeInvalidRequired, wantFields: []string{"host"}},
		{name: "host out-of-range IPv4", edit: set("host", "256.1.1.1"), wantCode: CodeInvalidRequired, wantFields: []string{"host"}},
		accepted("host IPv4 is accepted", "userName", set("host", "10.0.0.1")),
		accepted("host IPv6 is accepted", "userName", set("host", "2001:db8::1")),
		accepted("host name is accepted", "userName", set("host", "db-1.internal")),

		// port
		{name: "port missing", edit: func(b map[string]any) { delete(b, "port") }, wantCode: CodeInvalidRequired, wantFields: []string{"port"}},
		{name: "port null", edit: set("port", nil), wantCode: CodeInvalidRequired, wantFields: []string{"port"}},
		{name: "port string", edit: set("port", "5432"), wantCode: CodeInvalidRequired, wantFields: []string{"port"}},
		{name: "port empty string", edit: set("port", ""), wantCode: CodeInvalidRequired, wantFields: []string{"port"}},
		{name: "port boolean", edit: set("port", true), wantCode: CodeInvalidRequired, wantFields: []string{"port"}},
		{name: "port object", edit: set("port", map[string]any{"value": 5432}), wantCode: CodeInvalidRequired, wantFields: []string{"port"}},
		{name: "port array", edit: set("port", []int{5432}), wantCode: CodeInvalidRequired, wantFields: []string{"port"}},
		{name: "port 1.5", edit: set("port", raw("1.5")), wantCode: CodeInvalidRequired, wantFields: []string{"port"}},
		{name: "port 5432.5", edit: set("port", raw("5432.5")), wantCode: CodeInvalidRequired, wantFields: []string{"port"}},
		{name: "port 0", edit: set("port", 0), wantCode: CodeInvalidRequired, wantFields: []string{"port"}},
		{name: "port -1", edit: set("port", -1), wantCode: CodeInvalidRequired, wantFields: []string{"port"}},
		{name: "port 65536", edit: set("port", 65536), wantCode: CodeInvalidRequired, wantFields: []string{"port"}},
		{name: "port beyond int64", edit: set("port", raw("99999999999999999999999")), wantCode: CodeInvalidRequired, wantFields: []string{"port"}},
		accepted("port 1 is accepted", "userName", set("port", 1)),
		accepted("port 65535 is accepted", "userName", set("port", 65535)),

		// databaseName, userName
		{name: "databaseName missing", edit: func(b map[string]any) { delete(b, "databaseName") }, wantCode: CodeInvalidRequired, wantFields: []string{"databaseName"}},
		{name: "databaseName empty", edit: set("databaseName", ""), wantCode: CodeInvalidRequired, wantFields: []string{"databaseName"}},
		{name: "databaseName blank", edit: set("databaseName", "  "), wantCode: CodeInvalidRequired, wantFields: []string{"databaseName"}},
		{name: "databaseName 256 chars", edit: set("databaseName", strings.Repeat("d", 256)), wantCode: CodeInvalidRequired, wantFields: []string{"databaseName"}},
		accepted("databaseName 255 chars is accepted", "userName", set("databaseName", strings.Repeat("ü", 255))),
		{name: "userName missing", edit: func(b map[string]any) { delete(b, "userName") }, wantCode: CodeInvalidRequired, wantFields: []string{"userName"}},
		{name: "userName null", edit: set("userName", nil), wantCode: CodeInvalidRequired, wantFields: []string{"userName"}},
		{name: "userName empty", edit: set("userName", ""), wantCode: CodeInvalidRequired, wantFields: []string{"userName"}},
		{name: "userName 256 chars", edit: set("userName", strings.Repeat("u", 256)), wantCode: CodeInvalidRequired, wantFields: []string{"userName"}},
		accepted("userName 255 chars is accepted", "databaseName", set("userName", strings.Repeat("u", 255))),

		// password
		{name: "password missing", edit: func(b map[string]any) { delete(b, "password") }, wantCode: CodeInvalidRequired, wantFields: []string{"password"}},
		{name: "password null", edit: set("password", nil), wantCode: CodeInvalidRequired, wantFields: []string{"password"}},
		{name: "password empty", edit: set("password", ""), wantCode: CodeInvalidRequired, wantFields: []string{"password"}},
		{name: "password 1025 chars", edit: set("password", strings.Repeat("x", 1025-len(secretPassword))+secretPassword), wantCode: CodeInvalidRequired, wantFields: []string{"password"}},
		accepted("password 1024 chars is accepted", "userName", set("password", strings.Repeat("é", 1024-len(secretPassword))+secretPassword)),

		// schema
		{name: "schema 256 chars", edit: set("schema", strings.Repeat("s", 256)), wantCode: CodeBadValue, wantFields: []string{"schema"}},
		accepted("schema null is accepted", "userName", set("schema", nil)),
		accepted("schema empty is accepted", "userName", set("schema", "")),

		// ssl
		accepted("ssl null is accepted", "userName", set("ssl", nil)),
		{name: "ssl empty object", edit: setSSL(map[string]any{}), wantCode: CodeInvalidRequired, wantFields: []string{"ssl.mode"}},
		{name: "ssl ca without mode", edit: setSSL(map[string]any{"ca": pm.cert}), wantCode: CodeInvalidRequired, wantFields: []string{"ssl.mode"}},
		{name: "ssl mode null", edit: setSSL(map[string]any{"mode": nil}), wantCode: CodeInvalidRequired, wantFields: []string{"ssl.mode"}},
		{name: "ssl mode empty", edit: setSSL(map[string]any{"mode": ""}), wantCode: CodeInvalidRequired, wantFields: []string{"ssl.mode"}},
		{name: "ssl mode unknown", edit: setSSL(map[string]any{"mode": "bogus"}), wantCode: CodeInvalidSSLMode, wantFields: []string{"ssl.mode"}},
		{name: "ssl.ca not PEM", edit: setSSL(map[string]any{"mode": "require", "ca": "not a certificate"}), wantCode: CodeBadValue, wantFields: []string{"ssl.ca"}},
		{name: "ssl.ca is a key", edit: setSSL(map[string]any{"mode": "require", "ca": pm.key}), wantCode: CodeBadValue, wantFields: []string{"ssl.ca"}},
		{name: "ssl.ca block of garbage", edit: setSSL(map[string]any{"mode": "require",
			"ca": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage")}))}), wantCode: CodeBadValue, wantFields: []string{"ssl.ca"}},
		{name: "ssl.cert not PEM", edit: setSSL(map[string]any{"mode": "require", "cert": "nope", "key": pm.key}), wantCode: CodeBadValue, wantFields: []string{"ssl.cert"}},
		{name: "ssl.cert without key", edit: setSSL(map[string]any{"mode": "require", "cert": pm.cert}), wantCode: CodeBadValue, wantFields: []string{"ssl.key"}},
		{name: "ssl.key without cert", edit: setSSL(map[string]any{"mode": "require", "key": pm.key}), wantCode: CodeBadValue, wantFields: []string{"ssl.cert"}},
		{name: "ssl.key not PEM", edit: setSSL(map[string]any{"mode": "require", "cert": pm.cert, "key": "key-" + secretPassword}), wantCode: CodeBadValue, wantFields: []string{"ssl.key"}},
		{name: "ssl.key is a certificate", edit: setSSL(map[string]any{"mode": "require", "cert": pm.cert, "key": pm.cert}), wantCode: CodeBadValue, wantFields: []string{"ssl.key"}},
		{name: "ssl.key truncated", edit: setSSL(map[string]any{"mode": "require", "cert": pm.cert, "key": pm.key[:len(pm.key)-40]}), wantCode: CodeBadValue, wantFields: []string{"ssl.key"}},
		{name: "ssl.key with trailing text", edit: setSSL(map[string]any{"mode": "require", "cert": pm.cert, "key": pm.key + "trailing"}), wantCode: CodeBadValue, wantFields: []string{"ssl.key"}},
		accepted("ssl with ca is accepted", "userName", setSSL(map[string]any{"mode": "verify-full", "ca": pm.cert})),
		accepted("ssl with client cert and key is accepted", "userName", setSSL(map[string]any{"mode": "require", "cert": pm.cert, "key": pm.key})),
		accepted("ssl mode in capitals is accepted", "userName", setSSL(map[string]any{"mode": "REQUIRE"})),

		// metadata
		accepted("metadata null is accepted", "userName", set("metadata", nil)),
		accepted("metadata empty is accepted", "userName", set("metadata", map[string]any{})),
		accepted("metadata at the limits is accepted", "userName", set("metadata", metadataAtLimits())),
		{name: "metadata string", edit: set("metadata", "team=data"), wantCode: CodeMetadataNested, wantFields: []string{"metadata"}},
		{name: "metadata array", edit: set("metadata", []string{"team"}), wantCode: CodeMetadataNested, wantFields: []string{"metadata"}},
		{name: "metadata number", edit: set("metadata", 5), wantCode: CodeMetadataNested, wantFields: []string{"metadata"}},
		{name: "metadata nested object", edit: set("metadata", map[string]any{"team": map[string]any{"name": "data"}}), wantCode: CodeMetadataNested, wantFields: []string{"metadata.team"}},
		{name: "metadata array value", edit: set("metadata", map[string]any{"tags": []string{"a"}}), wantCode: CodeMetadataNested, wantFields: []string{"metadata.tags"}},
		{name: "metadata number value", edit: set("metadata", map[string]any{"replicas": 3}), wantCode: CodeMetadataNested, wantFields: []string{"metadata.replicas"}},
		{name: "metadata null value", edit: set("metadata", map[string]any{"owner": nil}), wantCode: CodeMetadataNested, wantFields: []string{"metadata.owner"}},
		{name: "metadata boolean value", edit: set("metadata", map[string]any{"prod": true}), wantCode: CodeMetadataNested, wantFields: []string{"metadata.prod"}},
		{name: "metadata 51 keys", edit: set("metadata", metadataKeys(51)), wantCode: CodeBadValue, wantFields: []string{"metadata"}},
		{name: "metadata key 101 chars", edit: set("metadata", map[string]any{strings.Repeat("k", 101): "v"}),
			wantCode: CodeMetadataKeyLong, wantFields: []string{"metadata." + strings.Repeat("k", 101)}},
		{name: "metadata empty key", edit: set("metadata", map[string]any{"": "v"}), wantCode: CodeMetadataKeyLong, wantFields: []string{"metadata"}},
		{name: "metadata value 2001 chars", edit: set("metadata", map[string]any{"team": strings.Repeat("v", 2001)}),
			wantCode: CodeMetadataValueLong, wantFields: []string{"metadata.team"}},

		// several refused fields: every one is listed
		{name: "every body field refused", edit: func(b map[string]any) {
			maps.Copy(b, map[string]any{
				"configName": "x", "type": "DB2", "host": "http://db", "port": 0, "databaseName": "", "userName": "",
				"password": "", "schema": strings.Repeat("s", 256),
				"ssl":      map[string]any{"ca": "junk", "cert": pm.cert},
				"metadata": map[string]any{"nested": map[string]any{}, "long": strings.Repeat("v", 2001), strings.Repeat("k", 101): "v"},
			})
		}, wantCode: CodeMetadataNested, wantFields: []string{
			"configName", "type", "host", "port", "databaseName", "userName", "password", "schema",
			"ssl.mode", "ssl.ca", "ssl.key", "metadata.nested", "metadata.long", "metadata." + strings.Repeat("k", 101),
		}},
		{name: "several fields refused by the domain alone", edit: func(b map[string]any) {
			maps.Copy(b, map[string]any{"configName": "x", "type": "DB2", "host": "db:1", "databaseName": " ", "password": ""})
		}, wantCode: CodeInvalidRequired, wantFields: []string{"configName", "type", "host", "databaseName", "password"}},
		{name: "ssl mode and ca refused together", edit: setSSL(map[string]any{"mode": "bogus", "ca": "junk"}),
			wantCode: CodeInvalidSSLMode, wantFields: []string{"ssl.mode", "ssl.ca"}},
		{name: "metadata nested and too long together", edit: set("metadata", map[string]any{"a": []any{}, "b": strings.Repeat("v", 2001)}),
			wantCode: CodeMetadataNested, wantFields: []string{"metadata.a", "metadata.b"}},
		{name: "two wrong JSON types", edit: func(b map[string]any) { b["configName"] = 1; b["host"] = 2 },
			wantCode: CodeBadValue, wantFields: []string{"configName", "host"}},
		{name: "wrong JSON type and a refused value", edit: func(b map[string]any) { b["configName"] = 1; b["host"] = "http://db" },
			wantCode: CodeBadValue + "|" + CodeInvalidRequired, wantFields: []string{"configName", "host"}},
		{name: "unknown field and a refused value", edit: func(b map[string]any) { b["bogus"] = 1; b["type"] = "DB2" },
			wantCode: CodeUnexpectedField, wantFields: []string{"bogus", "type"}},
	}

	// ssl.mode per engine, from the contract's lists.
	contractModes := map[string][]string{
		"POSTGRESQL": {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"},
		"MYSQL":      {"false", "true", "skip-verify", "preferred"},
		"MONGODB":    {"disable", "false", "true", "enable", "insecure"},
		"ORACLE":     {"disable", "false", "true", "enable", "verify", "skip-verify"},
		"SQL_SERVER": {"disable", "false", "true", "strict"},
	}
	var allModes []string
	for _, modes := range contractModes {
		allModes = append(allModes, modes...)
	}
	slices.Sort(allModes)
	allModes = slices.Compact(allModes)
	for _, engine := range slices.Sorted(maps.Keys(contractModes)) {
		for _, mode := range allModes {
			if slices.Contains(contractModes[engine], mode) {
				cases = append(cases, accepted("ssl.mode "+mode+" accepted for "+engine, "userName",
					func(b map[string]any) { b["type"] = engine; b["ssl"] = map[string]any{"mode": mode} }))
			} else {
				cases = append(cases, otherEngineModes(engine, mode))
			}
		}
	}

	secrets := append([]string{secretPassword, pm.key}, keyFragments()...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			handler, logs := newRefusingAPI(t)
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, tc.request(t))

			wantStatus := tc.wantStatus
			if wantStatus == 0 {
				wantStatus = http.StatusBadRequest
			}
			body := checkErrorShape(t, rec)
			if rec.Code != wantStatus {
				t.Errorf("status = %d, want %d (body %s)", rec.Code, wantStatus, abbreviate(rec.Body.String()))
			}
			if !slices.Contains(strings.Split(tc.wantCode, "|"), body.Code) {
				t.Errorf("code = %q, want %q (body %s)", body.Code, tc.wantCode, abbreviate(rec.Body.String()))
			}
			gotFields := slices.Sorted(maps.Keys(body.Fields))
			wantFields := slices.Sorted(slices.Values(tc.wantFields))
			if !slices.Equal(gotFields, wantFields) {
				t.Errorf("fields = %q, want %q (body %s)", gotFields, wantFields, abbreviate(rec.Body.String()))
			}
			if body.Code == CodeBadValue && len(tc.wantFields) == 1 && !strings.Contains(body.Message, tc.wantFields[0]) {
				t.Errorf("message %q does not name the field %q", body.Message, tc.wantFields[0])
			}
			for _, s := range secrets {
				if strings.Contains(rec.Body.String(), s) {
					t.Errorf("the answer quotes a secret: %s", abbreviate(rec.Body.String()))
				}
				if strings.Contains(logs.String(), s) {
					t.Errorf("the log quotes a secret: %s", abbreviate(logs.String()))
				}
			}
		})
	}
}

// errorShape is the contract's error body, written out here rather than
// borrowed from ErrorBody, so that a member added to ErrorBody fails the test.
type errorShape struct {
	Code    string            `json:"code"`
	Title   string            `json:"title"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields"`
}

// checkErrorShape decodes the answer as the one error shape,
// {"code","title","message","fields"}, refusing any other member.
func checkErrorShape(t *testing.T, rec *httptest.ResponseRecorder) errorShape {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body errorShape
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("the answer is not an error body: %v: %s", err, abbreviate(rec.Body.String()))
	}
	if body.Code == "" || body.Title == "" || body.Message == "" {
		t.Errorf("the error body lacks a code, title or message: %s", abbreviate(rec.Body.String()))
	}
	for path, reason := range body.Fields {
		if reason == "" {
			t.Errorf("field %q has no reason", path)
		}
	}
	return body
}

func withHeader(c createCase, h string) createCase {
	c.header = &h
	return c
}

func withContentType(c createCase, ct string) createCase {
	c.contentType = &ct
	return c
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// oversizeBody is a syntactically valid request of n bytes, carrying the
// password, so that only its size is wrong.
func oversizeBody(n int) string {
	head := `{"password":"` + secretPassword + `","configName":"`
	tail := `"}`
	return head + strings.Repeat("a", n-len(head)-len(tail)) + tail
}

// paddedBody is a request refused only for its missing userName, padded with
// whitespace to exactly n bytes.
func paddedBody(t *testing.T, n int) string {
	t.Helper()
	b := validBody()
	delete(b, "userName")
	s := mustJSON(t, b)
	return s + strings.Repeat(" ", n-len(s))
}

func metadataKeys(n int) map[string]any {
	md := make(map[string]any, n)
	for i := range n {
		md[strings.Repeat("k", i+1)] = "v"
	}
	return md
}

// metadataAtLimits has 50 keys, one of 100 characters holding a value of 2000.
func metadataAtLimits() map[string]any {
	md := metadataKeys(49)
	md[strings.Repeat("é", 100)] = strings.Repeat("ü", 2000)
	return md
}

func abbreviate(s string) string {
	if len(s) > 600 {
		return s[:600] + "..."
	}
	return s
}
