package events

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Upcaster rewrites the data of an event type that was published once and has
// since been superseded (From) into the data of a newer version of the same
// kind (To). It is how the versioning rule of the package comment holds for
// readers: the stream keeps every old event forever, so a breaking change
// ships a new version together with the upcaster from the old one, and Decode
// only ever hands out the newest payload types. Upcast must be a pure
// function of the old data and must not drop what the new version can carry.
type Upcaster struct {
	From   string
	To     string
	Upcast func(data json.RawMessage) (json.RawMessage, error)
}

// publishedUpcasters lists an upcaster for every event type the registry
// published once and has superseded since. It is empty: every published type
// is still current. A breaking change adds its upcaster here, with a test.
func publishedUpcasters() []Upcaster { return nil }

// defaultUpcasters is what Decode upcasts with. Building it cannot fail
// unless publishedUpcasters is wrong, which every test of the package shows.
var defaultUpcasters = mustUpcasters(publishedUpcasters())

// upcasters is a checked, immutable index of upcasters by source type.
// Chains are followed (v0 -> v1 -> v2) and always end, because every upcaster
// goes to a strictly newer version of the same kind.
type upcasters map[string]Upcaster

// newUpcasters refuses an upcaster without a function, one whose types are not
// versioned names of the same kind ("connection.created.v0" ->
// "connection.created.v1"), one that does not go to a newer version, and two
// upcasters from the same type.
func newUpcasters(list []Upcaster) (upcasters, error) {
	u := make(upcasters, len(list))
	for _, up := range list {
		if up.Upcast == nil {
			return nil, fmt.Errorf("events: upcaster %s -> %s has no function", up.From, up.To)
		}
		fromKind, fromVersion, err := splitType(up.From)
		if err != nil {
			return nil, err
		}
		toKind, toVersion, err := splitType(up.To)
		if err != nil {
			return nil, err
		}
		if fromKind != toKind || toVersion <= fromVersion {
			return nil, fmt.Errorf("events: upcaster %s -> %s must go to a newer version of the same event", up.From, up.To)
		}
		if _, dup := u[up.From]; dup {
			return nil, fmt.Errorf("events: two upcasters from %s", up.From)
		}
		u[up.From] = up
	}
	return u, nil
}

func mustUpcasters(list []Upcaster) upcasters {
	u, err := newUpcasters(list)
	if err != nil {
		panic(err)
	}
	return u
}

// splitType splits "connection.created.v1" into "connection.created" and 1.
func splitType(t string) (string, int, error) {
	i := strings.LastIndex(t, ".v")
	if i <= 0 {
		return "", 0, fmt.Errorf("events: %q is not a versioned event type", t)
	}
	v, err := strconv.Atoi(t[i+2:])
	if err != nil || v < 0 || strconv.Itoa(v) != t[i+2:] {
		return "", 0, fmt.Errorf("events: %q is not a versioned event type", t)
	}
	return t[:i], v, nil
}

// upcast applies upcasters from eventType on until none applies and returns
// the resulting type and data; a type without an upcaster comes back as is.
func (u upcasters) upcast(eventType string, data json.RawMessage) (string, json.RawMessage, error) {
	for {
		up, ok := u[eventType]
		if !ok {
			return eventType, data, nil
		}
		next, err := up.Upcast(data)
		if err != nil {
			return "", nil, fmt.Errorf("events: upcast %s to %s: %w", up.From, up.To, err)
		}
		eventType, data = up.To, next
	}
}

// Decoder decodes message bodies like Decode, with upcasters of its own on
// top of the published ones: a consumer that keeps reading an event type this
// package dropped, or a test of an upcaster before it ships, uses one.
type Decoder struct {
	upcasters upcasters
}

// NewDecoder returns a decoder that upcasts with the published upcasters and
// extra. It fails when an upcaster is malformed or two start from one type.
func NewDecoder(extra ...Upcaster) (*Decoder, error) {
	u, err := newUpcasters(append(publishedUpcasters(), extra...))
	if err != nil {
		return nil, err
	}
	return &Decoder{upcasters: u}, nil
}

// Decode parses a message body into an event, upcasting before it chooses
// the payload type.
func (d *Decoder) Decode(body []byte) (Event, error) { return decode(body, d.upcasters) }
