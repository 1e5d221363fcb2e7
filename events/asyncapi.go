package events

import (
	"bytes"
	_ "embed"
)

//go:embed asyncapi.yaml
var asyncAPI []byte

// AsyncAPI returns the AsyncAPI 3.0 document (YAML) of the stream's subjects,
// the envelope, the NATS headers and every payload, with a JSON Schema
// (draft-07) per type under components.schemas. It is the contract the tests
// hold the code to: a payload field added in Go but not in the document, or
// the other way round, fails them. Downstream services may serve it, generate
// code from it or check fixtures against it; the payload schemas are closed
// (additionalProperties: false), so a consumer validating live traffic with
// them must relax that, because a new optional field keeps the version.
// Each call returns a fresh copy.
func AsyncAPI() []byte { return bytes.Clone(asyncAPI) }
