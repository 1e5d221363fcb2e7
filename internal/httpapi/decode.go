package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
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

// readJSONBody checks the content type, size and syntax of the body and
// decodes it into the struct v with decodeStrict; violations of the body's
// shape come back as a *domain.ValidationError listing every field.
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
	if !json.Valid(body) {
		return badRequest(CodeBadValue, "Malformed JSON", "The body is not one valid JSON value.", nil)
	}
	if !validEncoding(body) {
		// Never quoted: the bytes may belong to a password.
		return badRequest(CodeBadValue, "Malformed JSON",
			"The body must be valid UTF-8 and its \\u escapes whole characters; invalid bytes are refused, not replaced.", nil)
	}
	var viol domain.ValidationError
	checkDuplicateKeys(body, &viol)
	if !decodeStrict(body, v, "", &viol) {
		return badRequest(CodeBadValue, "Malformed JSON", "The body must be a JSON object.", nil)
	}
	return viol.OrNil()
}

// decodeStrict decodes a JSON object into the struct that v points to,
// matching member names exactly (encoding/json alone would accept
// "ConfigName" for configName) and recording every unknown member and every
// value of the wrong JSON type under prefix, instead of stopping at the
// first. A member of pointer-to-struct type is decoded the same way, one
// level down. It returns false when raw is not an object. Values are never
// quoted: they may be secrets.
func decodeStrict(raw []byte, v any, prefix string, viol *domain.ValidationError) bool {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return false
	}
	rv := reflect.ValueOf(v).Elem()
	fields := map[string]reflect.Value{}
	for i := range rv.NumField() {
		if tag, _, _ := strings.Cut(rv.Type().Field(i).Tag.Get("json"), ","); tag != "" && tag != "-" {
			fields[tag] = rv.Field(i)
		}
	}
	for name, val := range members {
		path := prefix + domain.Printable(truncate(name, 100))
		f, ok := fields[name]
		if !ok {
			viol.Add(path, domain.ViolationUnknownField, "is not a known field")
			continue
		}
		if f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Struct && string(val) != "null" {
			nested := reflect.New(f.Type().Elem())
			if !decodeStrict(val, nested.Interface(), path+".", viol) {
				viol.Add(path, domain.ViolationBadValue, "must be a JSON object")
				continue
			}
			f.Set(nested)
			continue
		}
		if err := json.Unmarshal(val, f.Addr().Interface()); err != nil {
			viol.Add(path, domain.ViolationBadValue, "must be a JSON "+jsonKind(f.Type()))
		}
	}
	return true
}

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice:
		return "array"
	}
	return "value"
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
			v.Add("metadata."+domain.Printable(truncate(k, 100)), domain.ViolationMetadataNotFlat,
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
