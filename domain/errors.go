package domain

import (
	"errors"
	"sort"
	"strings"
)

// Errors that callers branch on.
var (
	// ErrNameTaken: another live connection of the organization already uses
	// the config name (compared case-insensitively).
	ErrNameTaken = errors.New("config name already in use")
	// ErrNotFound: no live connection has the id.
	ErrNotFound = errors.New("connection not found")
	// ErrVersionMismatch: the caller's expected version (If-Match) is stale.
	ErrVersionMismatch = errors.New("connection version does not match")
	// ErrIdempotencyKeyReused: an Idempotency-Key came back with another request.
	ErrIdempotencyKeyReused = errors.New("idempotency key used with a different request")
	// ErrProductNotAllowed: the caller's token does not allow the product
	// (its products claim); a 403, since the caller names the product itself.
	ErrProductNotAllowed = errors.New("product not allowed for this caller")
	// ErrConcurrentChange: the aggregate changed between load and append.
	ErrConcurrentChange = errors.New("connection changed concurrently")
	// ErrOutcomeUnknown: a write was sent and its answer never came, and
	// asking again could not tell whether it was stored. A retry with the
	// same Idempotency-Key finds out.
	ErrOutcomeUnknown = errors.New("the outcome of the write is unknown")
)

// ViolationKind classifies why one field was refused; the HTTP layer picks
// the error code from it.
type ViolationKind int

// The kinds of field violations.
const (
	// ViolationMissing: a required field is absent or empty.
	ViolationMissing ViolationKind = iota + 1
	// ViolationInvalid: a required field is present but its value is refused.
	ViolationInvalid
	// ViolationBadValue: an optional field's value is refused.
	ViolationBadValue
	// ViolationUnknownField: the input names a field that does not exist.
	ViolationUnknownField
	// ViolationMetadataNotFlat: a metadata value is not a string.
	ViolationMetadataNotFlat
	// ViolationMetadataValueTooLong: a metadata value exceeds its limit.
	ViolationMetadataValueTooLong
	// ViolationMetadataKeyTooLong: a metadata key is empty or exceeds its limit.
	ViolationMetadataKeyTooLong
	// ViolationSSLMode: the SSL mode is not one the engine accepts.
	ViolationSSLMode
)

// Violation is one refused field.
type Violation struct {
	Kind   ViolationKind
	Reason string
}

// ValidationError lists every refused field of one input, keyed by its JSON
// path (configName, ssl.mode, metadata.team). Reasons never quote a secret.
type ValidationError struct {
	Fields map[string]Violation
}

func (e *ValidationError) Error() string {
	paths := e.Paths()
	parts := make([]string, 0, len(paths))
	for _, p := range paths {
		parts = append(parts, p+": "+e.Fields[p].Reason)
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// Paths returns the refused field paths in a stable order.
func (e *ValidationError) Paths() []string {
	paths := make([]string, 0, len(e.Fields))
	for p := range e.Fields {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

// Add records a violation; the first one recorded for a path wins.
func (e *ValidationError) Add(path string, kind ViolationKind, reason string) {
	if e.Fields == nil {
		e.Fields = map[string]Violation{}
	}
	if _, ok := e.Fields[path]; !ok {
		e.Fields[path] = Violation{Kind: kind, Reason: reason}
	}
}

// Merge adds every violation of other.
func (e *ValidationError) Merge(other *ValidationError) {
	if other == nil {
		return
	}
	for p, v := range other.Fields {
		e.Add(p, v.Kind, v.Reason)
	}
}

// OrNil returns e when it holds a violation and nil otherwise, so that a
// validator can build one error and return it unconditionally.
func (e *ValidationError) OrNil() error {
	if e == nil || len(e.Fields) == 0 {
		return nil
	}
	return e
}
