package events_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/connreg/registry/events"
)

// seedEvents are one event of every current type, as the registry publishes
// them: the fuzzer starts from real envelopes.
func seedEvents() []events.Event {
	s := func(v string) *string { return &v }
	port := 5433
	meta := events.Metadata{EventID: "01890a5d-ac96-774b-bcce-b302099a8057", AggregateID: "01890a5d-ac96-774b-bcce-b302099a8058",
		AggregateVersion: 1, OccurredAt: time.Date(2026, 12, 2, 10, 0, 0, 123e6, time.UTC), Actor: "anonymous", RequestID: "req-1"}
	secret := events.SealedSecret{Scheme: "devseal", KeyName: "dev-1", Ciphertext: "devseal:v1:abc"}
	payloads := []events.Payload{
		&events.ConnectionCreatedV1{Organization: "default", ConfigName: "orders", ProductName: "reports", Type: "POSTGRESQL",
			Host: "db.example.com", Port: 5432, DatabaseName: "orders", UserName: "u", Schema: "public", Password: secret,
			SSL: &events.SSL{Mode: "require", Key: &secret}, Metadata: map[string]string{"team": "data"}},
		&events.ConnectionUpdatedV1{Changed: []string{"host", "port", "metadata"}, Host: s("db2"), Port: &port, Metadata: map[string]string{}},
		&events.ConnectionDeletedV1{ConfigName: "orders"},
		&events.ConnectionCredentialsResealedV1{Password: secret, SSLKey: &secret},
		&events.ConnectionTestedV1{Status: "failure", Reason: "TIMEOUT", LatencyMs: 10000},
		&events.ConnectionHealthChangedV1{Status: "failing", Previous: "healthy", Reason: "TIMEOUT", Message: "timed out"},
		&events.ConnectionSecretsReadV1{Secrets: []string{"password"}},
	}
	var out []events.Event
	for i, p := range payloads {
		m := meta
		m.AggregateVersion = uint64(i + 1)
		out = append(out, events.Event{Metadata: m, Payload: p})
	}
	return out
}

// FuzzDecode feeds arbitrary message bodies to events.Decode and to a
// decoder with an upcaster (connection.created.v0 -> v1). Properties: it
// never panics; a refused body yields an error and no event; an accepted one
// is a current type with an aggregate id and version, and encoding it is a
// fixed point (Encode, Decode, Encode gives the same bytes): what a consumer
// decodes and republishes is what it read.
func FuzzDecode(f *testing.F) {
	for _, e := range seedEvents() {
		b, err := events.Encode(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(envelopeOf(f, typeCreatedV0, v0Data))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"type":"connection.created.v1","aggregateid":"a","aggregateversion":1,"data":null}`))
	f.Add([]byte(`{"type":"connection.updated.v1","aggregateid":"a","aggregateversion":1,"data":{"changed":null,"metadata":{"$where":"x"}}}`))
	f.Add([]byte(`not json`))
	upcasting, err := events.NewDecoder(createdV0ToV1)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for name, decode := range map[string]func([]byte) (events.Event, error){"Decode": events.Decode, "upcasting": upcasting.Decode} {
			ev, err := decode(body)
			if err != nil {
				if ev.Payload != nil {
					t.Fatalf("%s: an error with an event: %v", name, err)
				}
				continue
			}
			// Decode hands out current types only: never one an upcaster
			// starts from.
			if ev.Payload == nil || ev.AggregateID == "" || ev.AggregateVersion == 0 || ev.Type() == typeCreatedV0 {
				t.Fatalf("%s accepted an incomplete event: %+v", name, ev)
			}
			first, err := events.Encode(ev)
			if err != nil {
				// A time json cannot write (a year past 9999) is the only
				// value Decode takes that Encode refuses.
				if ev.OccurredAt.Year() <= 9999 && ev.OccurredAt.Year() >= 0 {
					t.Fatalf("%s: decoded event does not encode: %v", name, err)
				}
				continue
			}
			again, err := events.Decode(first)
			if err != nil {
				t.Fatalf("%s: re-encoded event does not decode: %v\n%s", name, err, first)
			}
			second, err := events.Encode(again)
			if err != nil || !bytes.Equal(first, second) {
				t.Fatalf("%s: encoding is not a fixed point: %v\n%s\n%s", name, err, first, second)
			}
			if !json.Valid(first) {
				t.Fatalf("%s: encoded event is not JSON", name)
			}
		}
	})
}
