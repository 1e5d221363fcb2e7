package bootstrap_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/connreg/registry/events"
)

// contractSchemas are the schemas of the embedded AsyncAPI document, compiled:
// the message payload (envelope and data) of every documented event type,
// the bare envelope and the NATS headers.
type contractSchemas struct {
	byType   map[string]*jsonschema.Schema
	envelope *jsonschema.Schema
	headers  *jsonschema.Schema
}

func loadContract(t *testing.T) contractSchemas {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(events.AsyncAPI(), &doc); err != nil {
		t.Fatalf("AsyncAPI document: %v", err)
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	const url = "https://connreg.invalid/events/asyncapi.json"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7) // the AsyncAPI default schema format
	c.AssertFormat()
	if err := c.AddResource(url, inst); err != nil {
		t.Fatal(err)
	}
	compile := func(pointer string) *jsonschema.Schema {
		t.Helper()
		s, err := c.Compile(url + "#" + pointer)
		if err != nil {
			t.Fatalf("compile %s: %v", pointer, err)
		}
		return s
	}
	cs := contractSchemas{
		byType:   map[string]*jsonschema.Schema{},
		envelope: compile("/components/schemas/Envelope"),
		headers:  compile("/components/schemas/NatsHeaders"),
	}
	msgs, _ := doc["components"].(map[string]any)["messages"].(map[string]any)
	for key, m := range msgs {
		name, _ := m.(map[string]any)["name"].(string)
		if name == "" {
			t.Fatalf("AsyncAPI message %s has no name", key)
		}
		cs.byType[name] = compile("/components/messages/" + key + "/payload")
	}
	return cs
}

func validateJSON(s *jsonschema.Schema, body []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

// check validates one stored message: its body against the schema of its
// type and the envelope schema, its headers against the header schema, and
// that the headers repeat the envelope. It returns the event type.
func (cs contractSchemas) check(t *testing.T, subject string, header nats.Header, body []byte) string {
	t.Helper()
	var env struct {
		ID               string `json:"id"`
		Type             string `json:"type"`
		Subject          string `json:"subject"`
		Time             string `json:"time"`
		AggregateID      string `json:"aggregateid"`
		AggregateVersion uint64 `json:"aggregateversion"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Errorf("%s: body is not JSON: %v", subject, err)
		return ""
	}
	schema, ok := cs.byType[env.Type]
	if !ok {
		t.Errorf("%s: type %q is not in the AsyncAPI document: %s", subject, env.Type, body)
		return env.Type
	}
	if err := validateJSON(schema, body); err != nil {
		t.Errorf("%s %s does not meet its schema: %v\n%s", subject, env.Type, err, body)
	}
	if err := validateJSON(cs.envelope, body); err != nil {
		t.Errorf("%s %s does not meet the envelope schema: %v", subject, env.Type, err)
	}

	hdr := map[string]any{}
	for k, v := range header {
		if len(v) != 1 {
			t.Errorf("%s: header %s has %d values", subject, k, len(v))
		}
		hdr[k] = v[0]
	}
	rawHdr, _ := json.Marshal(hdr)
	if err := validateJSON(cs.headers, rawHdr); err != nil {
		t.Errorf("%s %s headers do not meet their schema: %v\n%v", subject, env.Type, err, header)
	}
	for name, want := range map[string]string{
		"Nats-Msg-Id":               env.ID,
		"ce-id":                     env.ID,
		"ce-type":                   env.Type,
		"Connreg-Event-Type":        env.Type,
		"ce-subject":                env.Subject,
		"Connreg-Aggregate-Version": strconv.FormatUint(env.AggregateVersion, 10),
	} {
		if got := header.Get(name); got != want {
			t.Errorf("%s %s: header %s = %q, the envelope says %q", subject, env.Type, name, got, want)
		}
	}
	if env.Subject != env.AggregateID || subject != events.EventSubjectPrefix+env.AggregateID {
		t.Errorf("message on %s: subject %q, aggregateid %q", subject, env.Subject, env.AggregateID)
	}
	bodyTime, err1 := time.Parse(time.RFC3339Nano, env.Time)
	headerTime, err2 := time.Parse(time.RFC3339Nano, header.Get("ce-time"))
	if err1 != nil || err2 != nil || !bodyTime.Equal(headerTime) {
		t.Errorf("%s %s: time %q, ce-time %q", subject, env.Type, env.Time, header.Get("ce-time"))
	}
	return env.Type
}

// TestContractEveryPublishedEventMeetsTheAsyncAPIDocument runs the real
// service through creates (with SSL, a client key, metadata, an
// Idempotency-Key), patches of every kind (rename, new password, engine
// change, SSL and metadata removal) and deletes, then holds every message on
// connections.events.> to the AsyncAPI document. A field sent but not
// documented fails (the schemas are closed), and so does a documented
// required field the code does not send.
func TestContractEveryPublishedEventMeetsTheAsyncAPIDocument(t *testing.T) {
	cs := loadContract(t)
	h := startService(t, t.TempDir(), nil)
	cert, key := clientCertificate(t)
	expect := func(res response, status int) map[string]any {
		t.Helper()
		if res.status != status {
			t.Fatalf("status %d, want %d: %s", res.status, status, res.body)
		}
		if status == http.StatusNoContent {
			return nil
		}
		return res.json(t)
	}

	// A: PostgreSQL with the whole SSL block and metadata.
	a := validBody("contract-db")
	a["ssl"] = map[string]any{"mode": "verify-full", "ca": cert, "cert": cert, "key": key}
	a["metadata"] = map[string]any{"team": "data", "env": "prod"}
	idA := expect(h.create(a), http.StatusCreated)["id"].(string)

	// B: MongoDB (no default schema), created with an Idempotency-Key and a correlation id.
	b := validBody("contract-mongo")
	b["type"] = "MONGODB"
	b["port"] = 27017
	delete(b, "metadata")
	idB := expect(h.do(http.MethodPost, "/v1/management/connections", b, map[string]string{
		"X-Product-Name": "Reports", "Idempotency-Key": "contract-1", "X-Correlation-Id": "corr-42",
	}), http.StatusCreated)["id"].(string)

	// A change of host, port, type or ssl sends the secrets again (REG-0423 otherwise).
	patches := []map[string]any{
		{"configName": "contract-db-renamed", "host": "db2.example.com", "port": 6432, "userName": "app", "password": "n3w-s3cret", "metadata": map[string]any{"tier": "gold"},
			"ssl": map[string]any{"mode": "verify-full", "ca": cert, "cert": cert, "key": key}},
		{"type": "MYSQL", "ssl": map[string]any{"mode": "true"}, "password": "n3w-s3cret-2"},
		{"ssl": nil, "metadata": map[string]any{}, "password": "n3w-s3cret-3"},
		{"databaseName": "reporting", "schema": "analytics"},
	}
	for _, p := range patches {
		expect(h.patch(idA, p, nil), http.StatusOK)
	}
	expect(h.patch(idB, map[string]any{"ssl": map[string]any{"mode": "enable", "ca": cert}, "password": "n3w-s3cret-4"}, map[string]string{"X-Request-Id": "req-contract-7"}), http.StatusOK)
	expect(h.do(http.MethodDelete, "/v1/management/connections/"+idA, nil, nil), http.StatusNoContent)
	expect(h.do(http.MethodDelete, "/v1/management/connections/"+idB, nil, nil), http.StatusNoContent)

	msgs := h.streamMessages(events.EventSubjectPrefix)
	seen := map[string]int{}
	for _, m := range msgs {
		seen[cs.check(t, m.Subject, m.Header, m.Data)]++
		for _, secret := range []string{"s3cret-contract-db", "s3cret-contract-mongo", "n3w-s3cret", "PRIVATE KEY"} {
			if bytes.Contains(m.Data, []byte(secret)) {
				t.Errorf("%s carries a plaintext secret", m.Subject)
			}
		}
	}
	want := map[string]int{events.TypeConnectionCreatedV1: 2, events.TypeConnectionUpdatedV1: 5, events.TypeConnectionDeletedV1: 2}
	for typ, n := range want {
		if seen[typ] != n {
			t.Errorf("%d %s events in the stream, want %d (all: %v)", seen[typ], typ, n, seen)
		}
	}
	if len(msgs) != 9 {
		t.Errorf("%d events in the stream, want 9", len(msgs))
	}

	// The optional fields this run exercised did reach the wire, so the
	// schemas above were checked against them and not only against absences.
	var all strings.Builder
	for _, m := range msgs {
		all.Write(m.Data)
	}
	for _, field := range []string{`"ssl":{"mode":"verify-full","ca":`, `"key":{"scheme":"dev"`, `"metadata":{`, `"idempotency":{`,
		`"correlationid":"corr-42"`, `"requestid":"req-contract-7"`, `"schema":""`, `"changed":["password","ssl","metadata"]`} {
		if !strings.Contains(all.String(), field) {
			t.Errorf("no event carried %s", field)
		}
	}
}
