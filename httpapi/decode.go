package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/connreg/registry/domain"
)

// MaxBodyBytes is the largest request body accepted.
const MaxBodyBytes = 1 << 20

type sslRequest struct {
	Mode *string `json:"mode"`
	CA   *string `json:"ca"`
	Cert *string `json:"cert"`
	Key  *string `json:"key"`
}

type createRequest struct {
	ConfigName   *string         `json:"configName"`
	Type         *string         `json:"type"`
	Host         *string         `json:"host"`
	Port         json.RawMessage `json:"port"`
	DatabaseName *string         `json:"databaseName"`
	UserName     *string         `json:"userName"`
	Password     *string         `json:"password"`
	Schema       *string         `json:"schema"`
	SSL          *sslRequest     `json:"ssl"`
	Metadata     json.RawMessage `json:"metadata"`
}

// readJSONBody checks the content type and size and decodes the body into v,
// refusing unknown fields and trailing data.
func readJSONBody(w http.ResponseWriter, r *http.Request, v any) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return &requestError{status: http.StatusUnsupportedMediaType, body: ErrorBody{
			Code: CodeUnsupportedMedia, Title: "Unsupported media type", Message: "The body must be application/json."}}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &requestError{status: http.StatusRequestEntityTooLarge, body: ErrorBody{
			Code: CodeBodyTooLarge, Title: "Body too large", Message: fmt.Sprintf("The body must be at most %d bytes.", MaxBodyBytes)}}
	}
	if err != nil {
		return badRequest(CodeBadValue, "Malformed request", "The body could not be read.", nil)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return badRequest(CodeBadValue, "Malformed JSON", "The body must hold exactly one JSON object.", nil)
	}
	return nil
}

// jsonError explains a decoding failure without quoting the input, which may
// hold a secret.
func jsonError(err error) error {
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr):
		path := typeErr.Field
		if path == "" {
			return badRequest(CodeBadValue, "Malformed JSON", "The body must be a JSON object.", nil)
		}
		return badRequest(CodeBadValue, "Invalid value", fmt.Sprintf("%s must be a JSON %s.", path, jsonKind(typeErr.Type.Kind().String())),
			map[string]string{path: "must be a JSON " + jsonKind(typeErr.Type.Kind().String())})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badRequest(CodeUnexpectedField, "Unexpected field", fmt.Sprintf("The field %q is not part of the request.", name),
			map[string]string{name: "is not a known field"})
	}
	return badRequest(CodeBadValue, "Malformed JSON", "The body is not valid JSON.", nil)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string", "ptr":
		return "string"
	case "struct", "map":
		return "object"
	case "slice":
		return "array"
	}
	return "value of another type"
}

// specInput turns a decoded create request into the domain's input, with the
// violations only JSON can see (a port that is not an integer, metadata that
// is not flat).
func (r *createRequest) specInput(product string) (domain.SpecInput, *domain.ValidationError) {
	var v domain.ValidationError
	in := domain.SpecInput{
		ProductName:  product,
		ConfigName:   deref(r.ConfigName),
		Type:         deref(r.Type),
		Host:         deref(r.Host),
		DatabaseName: deref(r.DatabaseName),
		UserName:     deref(r.UserName),
		Schema:       r.Schema,
	}
	if r.Password != nil {
		in.Password = []byte(*r.Password)
	}
	if present(r.Port) {
		if p, ok := parsePort(r.Port); ok {
			in.Port = p
		} else {
			v.Add("port", domain.ViolationInvalid, "must be an integer between 1 and 65535")
		}
	}
	if r.SSL != nil {
		in.SSL = &domain.SSLInput{Mode: deref(r.SSL.Mode), CA: deref(r.SSL.CA), Cert: deref(r.SSL.Cert)}
		if r.SSL.Key != nil {
			in.SSL.Key = []byte(*r.SSL.Key)
		}
	}
	in.Metadata = decodeMetadata(r.Metadata, &v)
	return in, &v
}

func decodeMetadata(raw json.RawMessage, v *domain.ValidationError) map[string]string {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		v.Add("metadata", domain.ViolationMetadataNotFlat, "must be an object of string values")
		return nil
	}
	out := make(map[string]string, len(fields))
	for k, val := range fields {
		var s string
		if err := json.Unmarshal(val, &s); err != nil || string(val) == "null" {
			v.Add("metadata."+truncate(k, 100), domain.ViolationMetadataNotFlat,
				"must be a string (nested objects, arrays, numbers and null are not allowed)")
			continue
		}
		out[k] = s
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
