package events_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/connreg/registry/events"
)

// typeCreatedV0 is a test-only older shape of the create event, in which the
// user name was called "user". The registry never published it; it shows how
// a breaking change ships with its upcaster.
const typeCreatedV0 = "connection.created.v0"

// renameField returns an upcaster step that renames one top-level field of a
// JSON object and keeps every other field as it is.
func renameField(from, to string) func(json.RawMessage) (json.RawMessage, error) {
	return func(data json.RawMessage) (json.RawMessage, error) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		if v, ok := m[from]; ok {
			if _, clash := m[to]; clash {
				return nil, errors.New("both " + from + " and " + to + " are set")
			}
			m[to] = v
			delete(m, from)
		}
		return json.Marshal(m)
	}
}

var createdV0ToV1 = events.Upcaster{From: typeCreatedV0, To: events.TypeConnectionCreatedV1, Upcast: renameField("user", "userName")}

func envelopeOf(t testing.TB, eventType, data string) []byte {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"specversion": "1.0", "id": "01890a5d-ac96-774b-bcce-b302099a8057", "source": "connreg", "type": eventType,
		"subject": "01890a5d-ac96-774b-bcce-b302099a8058", "time": "2024-06-01T10:00:00.000Z",
		"datacontenttype": "application/json", "aggregateid": "01890a5d-ac96-774b-bcce-b302099a8058",
		"aggregateversion": 1, "actor": "anonymous", "data": json.RawMessage(data),
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

const v0Data = `{"organization":"default","configName":"old-db","productName":"reports","type":"MYSQL",` +
	`"host":"db.example.com","port":3306,"databaseName":"orders","user":"legacy",` +
	`"password":{"scheme":"dev","keyName":"dev-1","ciphertext":"devseal:v1:abc"}}`

func TestUpcastCreatedV0ToV1(t *testing.T) {
	d, err := events.NewDecoder(createdV0ToV1)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := d.Decode(envelopeOf(t, typeCreatedV0, v0Data))
	if err != nil {
		t.Fatal(err)
	}
	created, ok := ev.Payload.(*events.ConnectionCreatedV1)
	if !ok {
		t.Fatalf("payload %T, want the newest create type", ev.Payload)
	}
	if ev.Type() != events.TypeConnectionCreatedV1 || created.UserName != "legacy" || created.Port != 3306 ||
		created.Password.Ciphertext != "devseal:v1:abc" || ev.AggregateVersion != 1 || ev.Actor != "anonymous" {
		t.Fatalf("upcast event = %+v %+v", ev, created)
	}
	// The upcast data is what the current schema describes.
	if err := validateBody(t, compileSchema(t, "/components/messages/connectionCreatedV1/payload"), mustEncode(t, ev)); err != nil {
		t.Fatalf("upcast event does not meet the v1 contract: %v", err)
	}

	// A current event passes through the same decoder untouched.
	v1 := strings.Replace(v0Data, `"user":`, `"userName":`, 1)
	if ev, err := d.Decode(envelopeOf(t, events.TypeConnectionCreatedV1, v1)); err != nil || ev.Payload.(*events.ConnectionCreatedV1).UserName != "legacy" {
		t.Fatalf("v1 through the decoder: %+v %v", ev, err)
	}
	// A broken old event says which upcast failed.
	_, err = d.Decode(envelopeOf(t, typeCreatedV0, strings.Replace(v0Data, `"user":`, `"userName":"x","user":`, 1)))
	if err == nil || !strings.Contains(err.Error(), "upcast "+typeCreatedV0) {
		t.Fatalf("conflicting fields: %v", err)
	}
}

func TestDecodeWithoutTheUpcasterDoesNotKnowV0(t *testing.T) {
	if _, err := events.Decode(envelopeOf(t, typeCreatedV0, v0Data)); !errors.Is(err, events.ErrUnknownType) {
		t.Fatalf("Decode of a type nobody upcasts: %v", err)
	}
}

func TestUpcastersChain(t *testing.T) {
	// A made-up kind with three versions: Decode follows v0 -> v1 -> v2 and
	// then chooses the payload type of v2, which this package does not know.
	noop := func(d json.RawMessage) (json.RawMessage, error) { return d, nil }
	d, err := events.NewDecoder(
		events.Upcaster{From: "connection.probed.v1", To: "connection.probed.v2", Upcast: noop},
		events.Upcaster{From: "connection.probed.v0", To: "connection.probed.v1", Upcast: noop},
	)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Decode(envelopeOf(t, "connection.probed.v0", `{}`))
	if !errors.Is(err, events.ErrUnknownType) || !strings.Contains(err.Error(), `"connection.probed.v2"`) {
		t.Fatalf("chain not followed to v2: %v", err)
	}
	// Two upcasters from one type would make the result depend on the order.
	if _, err := events.NewDecoder(createdV0ToV1, createdV0ToV1); err == nil {
		t.Fatal("two upcasters from one type were accepted")
	}
}

func TestNewDecoderRefusesMalformedUpcasters(t *testing.T) {
	noop := func(d json.RawMessage) (json.RawMessage, error) { return d, nil }
	for name, up := range map[string]events.Upcaster{
		"no function":      {From: typeCreatedV0, To: events.TypeConnectionCreatedV1},
		"older target":     {From: events.TypeConnectionCreatedV1, To: typeCreatedV0, Upcast: noop},
		"same version":     {From: events.TypeConnectionCreatedV1, To: events.TypeConnectionCreatedV1, Upcast: noop},
		"other kind":       {From: typeCreatedV0, To: events.TypeConnectionUpdatedV1, Upcast: noop},
		"unversioned from": {From: "connection.created", To: events.TypeConnectionCreatedV1, Upcast: noop},
		"bad version":      {From: "connection.created.vX", To: events.TypeConnectionCreatedV1, Upcast: noop},
	} {
		if _, err := events.NewDecoder(up); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func mustEncode(t *testing.T, e events.Event) []byte {
	t.Helper()
	b, err := events.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
