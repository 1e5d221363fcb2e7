package domain

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"unicode/utf8"
)

// Metadata limits.
const (
	MaxMetadataKeys        = 50
	MaxMetadataKeyLength   = 100
	MaxMetadataValueLength = 2000
)

// Metadata is a connection's free-form labels: at most MaxMetadataKeys
// pairs, each key and value accepted by ParseMetadataKey and
// ParseMetadataValue, so that every store the projector writes to can hold
// it as it is. ParseMetadata is the only way to make one from input.
type Metadata map[string]string

// ParseMetadata validates every pair of md, reporting each refused key under
// its own path (metadata.<key>), and returns a copy of it; nil when md is
// empty.
func ParseMetadata(md map[string]string) (Metadata, error) {
	var v ValidationError
	validateMetadata(md, &v)
	if err := v.OrNil(); err != nil {
		return nil, err
	}
	if len(md) == 0 {
		return nil, nil
	}
	return Metadata(maps.Clone(md)), nil
}

// ParseMetadataKey refuses a metadata key that the read model cannot store
// as a document field name, or that would mislead a reader: empty, longer
// than MaxMetadataKeyLength characters, starting with '$' (MongoDB reads it
// as an operator), containing '.' (a path separator) or any character
// checkText refuses (a NUL ends a BSON key). A key accepted here can be
// written by every store the projector supports, so one event can never
// stop the projection.
func ParseMetadataKey(k string) error {
	switch {
	case k == "":
		return errors.New("keys must not be empty")
	case !utf8.ValidString(k):
		return errNotUTF8
	case utf8.RuneCountInString(k) > MaxMetadataKeyLength:
		return fmt.Errorf("key must be at most %d characters long", MaxMetadataKeyLength)
	case strings.HasPrefix(k, "$"):
		return errors.New("key must not start with '$'")
	case strings.Contains(k, "."):
		return errors.New("key must not contain '.'")
	}
	return checkText(k)
}

// ParseMetadataValue refuses a metadata value the read model cannot store
// faithfully: invalid UTF-8 (replaced silently on the way), a NUL byte, or
// more than MaxMetadataValueLength characters. Line breaks and tabs are
// allowed: a value is free text.
func ParseMetadataValue(v string) error {
	switch {
	case !utf8.ValidString(v):
		return errNotUTF8
	case strings.IndexByte(v, 0) >= 0:
		return errors.New("must not contain NUL characters")
	case utf8.RuneCountInString(v) > MaxMetadataValueLength:
		return fmt.Errorf("must be at most %d characters long", MaxMetadataValueLength)
	}
	return nil
}

// metadataPath is the field path that names key k in a refusal: the key as
// given when it is safe text, escaped otherwise, and never longer than 120
// bytes.
func metadataPath(k string) string {
	path := "metadata." + Printable(k)
	if len(path) > 120 {
		path = strings.ToValidUTF8(path[:120], "")
	}
	return path
}

func validateMetadata(md map[string]string, v *ValidationError) {
	if len(md) > MaxMetadataKeys {
		v.Add("metadata", ViolationBadValue, fmt.Sprintf("must have at most %d keys", MaxMetadataKeys))
	}
	for k, val := range md {
		path := metadataPath(k)
		if err := ParseMetadataKey(k); err != nil {
			switch {
			case k == "":
				v.Add("metadata", ViolationMetadataKeyTooLong, err.Error())
			case utf8.ValidString(k) && utf8.RuneCountInString(k) > MaxMetadataKeyLength:
				v.Add(path, ViolationMetadataKeyTooLong, err.Error())
			default:
				v.Add(path, ViolationBadValue, err.Error())
			}
			continue
		}
		if err := ParseMetadataValue(val); err != nil {
			kind := ViolationBadValue
			if utf8.ValidString(val) && utf8.RuneCountInString(val) > MaxMetadataValueLength {
				kind = ViolationMetadataValueTooLong
			}
			v.Add(path, kind, err.Error())
		}
	}
}
