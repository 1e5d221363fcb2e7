package events_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/connreg/registry/events"
)

// asyncAPIDoc is the embedded document as generic JSON values.
func asyncAPIDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(events.AsyncAPI(), &doc); err != nil {
		t.Fatalf("the embedded AsyncAPI document is not YAML: %v", err)
	}
	return doc
}

// dig walks nested maps by keys.
func dig(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for i, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("AsyncAPI: %s is not a mapping", strings.Join(keys[:i], "."))
		}
		if v, ok = m[k]; !ok {
			t.Fatalf("AsyncAPI: %s is missing", strings.Join(keys[:i+1], "."))
		}
	}
	return v
}

const docURL = "https://connreg.invalid/events/asyncapi.json"

// compileSchema compiles one schema of the document, addressed by a JSON
// pointer, with format assertions on (draft-07 is the AsyncAPI default).
func compileSchema(t *testing.T, pointer string) *jsonschema.Schema {
	t.Helper()
	var doc any
	if err := yaml.Unmarshal(events.AsyncAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	c.AssertFormat()
	if err := c.AddResource(docURL, inst); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(docURL + "#" + pointer)
	if err != nil {
		t.Fatalf("compile %s: %v", pointer, err)
	}
	return s
}

func validateBody(t *testing.T, s *jsonschema.Schema, body []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(inst)
}

// messageNames maps each event type to its message in components.messages.
var messageNames = map[string]string{
	events.TypeConnectionCreatedV1:             "connectionCreatedV1",
	events.TypeConnectionUpdatedV1:             "connectionUpdatedV1",
	events.TypeConnectionDeletedV1:             "connectionDeletedV1",
	events.TypeConnectionCredentialsResealedV1: "connectionCredentialsResealedV1",
	events.TypeConnectionTestedV1:              "connectionTestedV1",
	events.TypeConnectionSecretsReadV1:         "connectionSecretsReadV1",
	events.TypeConnectionHealthChangedV1:       "connectionHealthChangedV1",
	events.TypeConnectionSchemaDiscoveredV1:    "connectionSchemaDiscoveredV1",
}

func TestAsyncAPIDocumentNamesEveryEventType(t *testing.T) {
	doc := asyncAPIDoc(t)
	if v := dig(t, doc, "asyncapi"); v != "3.0.0" {
		t.Errorf("asyncapi = %v, want 3.0.0", v)
	}
	if a := dig(t, doc, "channels", "connectionEvents", "address"); a != events.EventSubjectPrefix+"{connectionId}" {
		t.Errorf("events channel address = %v", a)
	}
	if a := dig(t, doc, "channels", "connectionNames", "address"); !strings.HasPrefix(a.(string), events.NameSubjectPrefix) {
		t.Errorf("names channel address = %v", a)
	}
	msgs := dig(t, doc, "components", "messages").(map[string]any)
	if len(msgs) != len(messageNames) {
		t.Errorf("the document has %d messages, the package %d types", len(msgs), len(messageNames))
	}
	channelMsgs := dig(t, doc, "channels", "connectionEvents", "messages").(map[string]any)
	for typ, key := range messageNames {
		if name := dig(t, msgs, key, "name"); name != typ {
			t.Errorf("message %s is named %v, want %s", key, name, typ)
		}
		if c := dig(t, msgs, key, "payload", "allOf").([]any)[1]; dig(t, c, "properties", "type", "const") != typ {
			t.Errorf("message %s: payload type is not pinned to %s", key, typ)
		}
		if _, ok := channelMsgs[key]; !ok {
			t.Errorf("channel connectionEvents lacks message %s", key)
		}
	}
}

// schemaTypes pairs every schema of the document that a Go type encodes.
var schemaTypes = map[string]reflect.Type{
	"Envelope":                        reflect.TypeFor[events.Envelope](),
	"SealedSecret":                    reflect.TypeFor[events.SealedSecret](),
	"SSL":                             reflect.TypeFor[events.SSL](),
	"Idempotency":                     reflect.TypeFor[events.Idempotency](),
	"ConnectionCreatedV1":             reflect.TypeFor[events.ConnectionCreatedV1](),
	"ConnectionUpdatedV1":             reflect.TypeFor[events.ConnectionUpdatedV1](),
	"ConnectionDeletedV1":             reflect.TypeFor[events.ConnectionDeletedV1](),
	"ConnectionCredentialsResealedV1": reflect.TypeFor[events.ConnectionCredentialsResealedV1](),
	"ConnectionTestedV1":              reflect.TypeFor[events.ConnectionTestedV1](),
	"ConnectionSchemaDiscoveredV1":    reflect.TypeFor[events.ConnectionSchemaDiscoveredV1](),
	"SchemaTable":                     reflect.TypeFor[events.SchemaTable](),
	"SchemaColumn":                    reflect.TypeFor[events.SchemaColumn](),
}

// jsonFields returns the JSON names of a struct's fields and those that are
// always sent (no omitempty), as encoding/json sees them.
func jsonFields(t *testing.T, typ reflect.Type) (all, always []string) {
	t.Helper()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Anonymous {
			t.Fatalf("%s embeds %s: teach jsonFields about embedding", typ, f.Type)
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		all = append(all, name)
		if !slices.Contains(strings.Split(opts, ","), "omitempty") && !slices.Contains(strings.Split(opts, ","), "omitzero") {
			always = append(always, name)
		}
	}
	slices.Sort(all)
	slices.Sort(always)
	return all, always
}

func stringList(t *testing.T, v any) []string {
	t.Helper()
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	slices.Sort(out)
	return out
}

// TestAsyncAPISchemasMatchTheGoTypes fails fast, without a server, when a Go
// payload gains, loses or renames a field, or changes whether it is always
// sent, without the document saying so.
func TestAsyncAPISchemasMatchTheGoTypes(t *testing.T) {
	schemas := dig(t, asyncAPIDoc(t), "components", "schemas").(map[string]any)
	for name, typ := range schemaTypes {
		t.Run(name, func(t *testing.T) {
			s := schemas[name]
			if s == nil {
				t.Fatalf("components.schemas.%s is missing", name)
			}
			if dig(t, s, "additionalProperties") != false {
				t.Errorf("%s is not closed (additionalProperties: false)", name)
			}
			all, always := jsonFields(t, typ)
			props := slices.Sorted(maps.Keys(dig(t, s, "properties").(map[string]any)))
			if !slices.Equal(all, props) {
				t.Errorf("%s: Go fields %v, document properties %v", name, all, props)
			}
			if required := stringList(t, dig(t, s, "required")); !slices.Equal(always, required) {
				t.Errorf("%s: Go always sends %v, document requires %v", name, always, required)
			}
		})
	}
	// Every Go payload type has a schema here.
	for typ, key := range messageNames {
		ref := dig(t, asyncAPIDoc(t), "components", "messages", key, "payload", "allOf").([]any)[1]
		want := "#/components/schemas/C" + key[1:]
		if got := dig(t, ref, "properties", "data", "$ref"); got != want {
			t.Errorf("%s data = %v, want %s", typ, got, want)
		}
	}
	// The updated event's field list names exactly its optional fields.
	changed := stringList(t, dig(t, schemas, "ConnectionUpdatedV1", "properties", "changed", "items", "enum"))
	all, _ := jsonFields(t, reflect.TypeFor[events.ConnectionUpdatedV1]())
	if want := slices.DeleteFunc(all, func(s string) bool { return s == "changed" }); !slices.Equal(changed, want) {
		t.Errorf("changed enum %v, updatable fields %v", changed, want)
	}
}

func sealed(text string) events.SealedSecret {
	return events.SealedSecret{Scheme: "dev", KeyName: "dev-0a1b2c3d", Ciphertext: "devseal:v1:" + text}
}

func pointerTo[T any](v T) *T { return &v }

// samples are one event of every type, with optional fields both set and not.
func samples() []events.Payload {
	return []events.Payload{
		&events.ConnectionCreatedV1{
			Organization: "default", ConfigName: "orders-db", ProductName: "reports", Type: "POSTGRESQL",
			Host: "db.example.com", Port: 5432, DatabaseName: "orders", UserName: "app", Password: sealed("abc"),
			Schema: "public", SSL: &events.SSL{Mode: "verify-full", CA: "-----BEGIN CERTIFICATE-----\n"},
			Metadata:    map[string]string{"team": "data"},
			Idempotency: &events.Idempotency{KeyHash: strings.Repeat("a", 64), Fingerprint: strings.Repeat("b", 64)},
		},
		&events.ConnectionCreatedV1{
			Organization: "default", ConfigName: "mongo-db", ProductName: "reports", Type: "MONGODB",
			Host: "10.0.0.1", Port: 27017, DatabaseName: "orders", UserName: "app",
			Password: events.SealedSecret{Scheme: "vault-transit", KeyName: "connreg", Ciphertext: "vault:v3:Zm9v"},
		},
		&events.ConnectionUpdatedV1{
			Changed: []string{"configName", "host", "password", "ssl", "metadata"}, ConfigName: pointerTo("new-name"),
			Host: pointerTo("db2.example.com"), Password: pointerTo(sealed("new")),
			SSL: &events.SSL{Mode: "require", Cert: "-----BEGIN CERTIFICATE-----\n", Key: pointerTo(sealed("key"))},
		},
		&events.ConnectionUpdatedV1{Changed: []string{"port", "schema"}, Port: pointerTo(6432), Schema: pointerTo("")},
		&events.ConnectionDeletedV1{ConfigName: "orders-db"},
		&events.ConnectionCredentialsResealedV1{Password: sealed("x"), SSLKey: pointerTo(sealed("y"))},
		&events.ConnectionCredentialsResealedV1{Password: sealed("x")},
		&events.ConnectionTestedV1{Status: "success", LatencyMs: 12},
		&events.ConnectionTestedV1{Status: "failure", Reason: "connection refused", LatencyMs: 0},
		&events.ConnectionSchemaDiscoveredV1{Digest: strings.Repeat("c", 64), Tables: []events.SchemaTable{
			{Name: "orders", Columns: []events.SchemaColumn{{Name: "id", Type: "bigint", PrimaryKey: true}, {Name: "note", Type: "text", Nullable: true}}},
			{Name: "open_orders", View: true, Columns: []events.SchemaColumn{{Name: "id", Type: "bigint", Nullable: true}}},
		}},
		&events.ConnectionSchemaDiscoveredV1{Digest: strings.Repeat("d", 64), Sampled: true, Tables: []events.SchemaTable{}},
	}
}

func encodeSample(t *testing.T, p events.Payload) []byte {
	t.Helper()
	body, err := events.Encode(events.Event{
		Metadata: events.Metadata{
			EventID: "01890a5d-ac96-774b-bcce-b302099a8057", AggregateID: "01890a5d-ac96-774b-bcce-b302099a8058",
			AggregateVersion: 3, OccurredAt: time.Date(2025, 1, 2, 3, 4, 5, 6e6, time.UTC),
			Actor: "anonymous", RequestID: "req-1",
		},
		Payload: p,
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestAsyncAPISchemasAcceptWhatEncodeWrites(t *testing.T) {
	envelope := compileSchema(t, "/components/schemas/Envelope")
	for _, p := range samples() {
		body := encodeSample(t, p)
		msg := compileSchema(t, "/components/messages/"+messageNames[p.EventType()]+"/payload")
		if err := validateBody(t, msg, body); err != nil {
			t.Errorf("%s: %v\n%s", p.EventType(), err, body)
		}
		if err := validateBody(t, envelope, body); err != nil {
			t.Errorf("%s envelope: %v", p.EventType(), err)
		}
	}
}

// TestAsyncAPISchemasRefuseDrift shows that the schemas are strict enough to
// catch what the contract forbids.
func TestAsyncAPISchemasRefuseDrift(t *testing.T) {
	created := compileSchema(t, "/components/messages/connectionCreatedV1/payload")
	updated := compileSchema(t, "/components/messages/connectionUpdatedV1/payload")
	base := encodeSample(t, samples()[0])
	edit := func(body []byte, f func(env, data map[string]any)) []byte {
		var env map[string]any
		if err := json.Unmarshal(body, &env); err != nil {
			t.Fatal(err)
		}
		f(env, env["data"].(map[string]any))
		out, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for name, body := range map[string][]byte{
		"extra payload field":     edit(base, func(_, d map[string]any) { d["plaintext"] = "x" }),
		"extra envelope field":    edit(base, func(e, _ map[string]any) { e["extra"] = 1 }),
		"missing required field":  edit(base, func(_, d map[string]any) { delete(d, "host") }),
		"plaintext password":      edit(base, func(_, d map[string]any) { d["password"] = "s3cret" }),
		"unsealed ciphertext":     edit(base, func(_, d map[string]any) { d["password"].(map[string]any)["ciphertext"] = "s3cret" }),
		"scheme/prefix mismatch":  edit(base, func(_, d map[string]any) { d["password"].(map[string]any)["scheme"] = "vault-transit" }),
		"unknown engine":          edit(base, func(_, d map[string]any) { d["type"] = "DB2" }),
		"mode of another engine":  edit(base, func(_, d map[string]any) { d["ssl"].(map[string]any)["mode"] = "strict" }),
		"port as string":          edit(base, func(_, d map[string]any) { d["port"] = "5432" }),
		"version zero":            edit(base, func(e, _ map[string]any) { e["aggregateversion"] = 0 }),
		"time not RFC 3339":       edit(base, func(e, _ map[string]any) { e["time"] = "yesterday" }),
		"wrong type for the data": edit(base, func(e, _ map[string]any) { e["type"] = events.TypeConnectionDeletedV1 }),
	} {
		if validateBody(t, created, body) == nil {
			t.Errorf("%s: accepted %s", name, body)
		}
	}
	upd := encodeSample(t, samples()[2])
	for name, body := range map[string][]byte{
		"listed but absent":  edit(upd, func(_, d map[string]any) { delete(d, "host") }),
		"present not listed": edit(upd, func(_, d map[string]any) { d["port"] = 1 }),
		"unknown field name": edit(upd, func(_, d map[string]any) { d["changed"] = []any{"host", "nope"} }),
		"nothing changed":    edit(upd, func(_, d map[string]any) { d["changed"] = []any{} }),
	} {
		if validateBody(t, updated, body) == nil {
			t.Errorf("%s: accepted %s", name, body)
		}
	}
}
