package domain_test

import (
	"strings"
	"testing"
	"time"

	"github.com/connreg/registry/domain"
)

// Every metadata key and value below is one the read model cannot store
// (MongoDB refuses '$' prefixes, '.' and NUL in field names) or one that
// would be altered or misread on the way; the domain must refuse each with
// a violation that names the key.
func TestParseMetadataKey(t *testing.T) {
	tests := []struct {
		key    string
		reason string // a fragment of the reason; "" means accepted
	}{
		{"team", ""},
		{"Team_1-x", ""},
		{"clé", ""},
		{"a$b", ""},
		{"with space", ""},
		{strings.Repeat("é", domain.MaxMetadataKeyLength), ""},
		{"", "empty"},
		{"$where", "'$'"},
		{"$", "'$'"},
		{"a.b", "'.'"},
		{".", "'.'"},
		{"a..b", "'.'"},
		{"a\x00b", "control"},
		{"\x00", "control"},
		{"a\x1b[31mb", "control"},
		{"a\r\nb", "control"},
		{"tab\tkey", "control"},
		{"c1\u0085x", "control"},
		{"bidi\u202eevil", "bidirectional"},
		{"isolate\u2066x", "bidirectional"},
		{"bad\xffutf8", "UTF-8"},
		{"\xc3", "UTF-8"},
		{strings.Repeat("k", domain.MaxMetadataKeyLength+1), "at most"},
	}
	for _, tt := range tests {
		err := domain.ParseMetadataKey(tt.key)
		switch {
		case tt.reason == "" && err != nil:
			t.Errorf("ParseMetadataKey(%q) = %v, want accepted", tt.key, err)
		case tt.reason != "" && (err == nil || !strings.Contains(err.Error(), tt.reason)):
			t.Errorf("ParseMetadataKey(%q) = %v, want a refusal mentioning %q", tt.key, err, tt.reason)
		}
	}
}

func TestParseMetadataValue(t *testing.T) {
	tests := []struct {
		value  string
		reason string
	}{
		{"", ""},
		{"data-engineering", ""},
		{"line one\nline two\ttabbed", ""},
		{"$where", ""},
		{"a.b", ""},
		{strings.Repeat("ü", domain.MaxMetadataValueLength), ""},
		{"nul\x00inside", "NUL"},
		{"\xff", "UTF-8"},
		{"ok\xed\xa0\x80", "UTF-8"}, // an encoded surrogate
		{strings.Repeat("v", domain.MaxMetadataValueLength+1), "at most"},
	}
	for _, tt := range tests {
		err := domain.ParseMetadataValue(tt.value)
		switch {
		case tt.reason == "" && err != nil:
			t.Errorf("ParseMetadataValue(%q) = %v, want accepted", tt.value, err)
		case tt.reason != "" && (err == nil || !strings.Contains(err.Error(), tt.reason)):
			t.Errorf("ParseMetadataValue(%q) = %v, want a refusal mentioning %q", tt.value, err, tt.reason)
		}
	}
}

// TestParseSpecRefusesUnstorableMetadata checks that create and update both
// refuse such metadata and that the violation's path names the key (escaped
// when the key itself is not safe text).
func TestParseSpecRefusesUnstorableMetadata(t *testing.T) {
	bad := domain.ViolationBadValue
	tests := []struct {
		md   map[string]string
		want map[string]domain.ViolationKind
	}{
		{map[string]string{"$where": "v"}, map[string]domain.ViolationKind{"metadata.$where": bad}},
		{map[string]string{"$": "v"}, map[string]domain.ViolationKind{"metadata.$": bad}},
		{map[string]string{"a.b": "v"}, map[string]domain.ViolationKind{"metadata.a.b": bad}},
		{map[string]string{".": "v"}, map[string]domain.ViolationKind{"metadata..": bad}},
		{map[string]string{"a..b": "v"}, map[string]domain.ViolationKind{"metadata.a..b": bad}},
		{map[string]string{"a\x00b": "v"}, map[string]domain.ViolationKind{`metadata.a\x00b`: bad}},
		{map[string]string{"a\u202eb": "v"}, map[string]domain.ViolationKind{`metadata.a\u202eb`: bad}},
		{map[string]string{"k\xff": "v"}, map[string]domain.ViolationKind{`metadata.k\xff`: bad}},
		{map[string]string{"team": "a\x00b"}, map[string]domain.ViolationKind{"metadata.team": bad}},
		{map[string]string{"team": "\xff"}, map[string]domain.ViolationKind{"metadata.team": bad}},
		{map[string]string{"ok": "v", "$x": "v", "y.z": "w"}, map[string]domain.ViolationKind{"metadata.$x": bad, "metadata.y.z": bad}},
	}
	for _, tt := range tests {
		in := validInput()
		in.Metadata = tt.md
		_, _, err := domain.ParseSpec(in)
		requireViolations(t, err, tt.want)

		conn := createdConnection(t)
		_, _, err = conn.ParsePatch(domain.PatchInput{SetMetadata: true, Metadata: tt.md})
		requireViolations(t, err, tt.want)
	}
}

// TestTextFieldsRefuseControlAndBidi covers the free-text and name fields:
// NUL, ANSI escapes, CR/LF inside the value, C1 controls, bidi overrides and
// invalid UTF-8 are refused; surrounding white space is trimmed as before.
func TestTextFieldsRefuseControlAndBidi(t *testing.T) {
	hostile := map[string]string{
		"NUL":            "db\x00x",
		"ANSI escape":    "db\x1b[2Jx",
		"CR LF":          "db\r\nInjected: 1",
		"LF":             "a\nb",
		"C1 CSI":         "db\u009bx",
		"DEL":            "db\x7fx",
		"RLO":            "db\u202ex",
		"LRE":            "db\u202ax",
		"FSI isolate":    "db\u2068x",
		"PDI isolate":    "db\u2069x",
		"invalid UTF-8":  "db\xffx",
		"truncated rune": "db\xe2\x80",
	}
	fields := map[string]func(in *domain.SpecInput, s string){
		"configName":     func(in *domain.SpecInput, s string) { in.ConfigName = s },
		"host":           func(in *domain.SpecInput, s string) { in.Host = s },
		"databaseName":   func(in *domain.SpecInput, s string) { in.DatabaseName = s },
		"userName":       func(in *domain.SpecInput, s string) { in.UserName = s },
		"schema":         func(in *domain.SpecInput, s string) { in.Schema = &s },
		"X-Product-Name": func(in *domain.SpecInput, s string) { in.ProductName = s },
	}
	for field, set := range fields {
		for name, value := range hostile {
			in := validInput()
			set(&in, value)
			_, _, err := domain.ParseSpec(in)
			kind := domain.ViolationInvalid
			if field == "schema" {
				kind = domain.ViolationBadValue
			}
			t.Run(field+"/"+name, func(t *testing.T) {
				requireViolations(t, err, map[string]domain.ViolationKind{field: kind})
			})
		}
	}
	patches := map[string]func(in *domain.PatchInput, s string){
		"configName":   func(in *domain.PatchInput, s string) { in.ConfigName = &s },
		"host":         func(in *domain.PatchInput, s string) { in.Host = &s },
		"databaseName": func(in *domain.PatchInput, s string) { in.DatabaseName = &s },
		"userName":     func(in *domain.PatchInput, s string) { in.UserName = &s },
		"schema":       func(in *domain.PatchInput, s string) { in.Schema = &s },
	}
	for field, set := range patches {
		for name, value := range hostile {
			var in domain.PatchInput
			set(&in, value)
			_, _, err := createdConnection(t).ParsePatch(in)
			kind := domain.ViolationInvalid
			if field == "schema" {
				kind = domain.ViolationBadValue
			}
			t.Run("patch "+field+"/"+name, func(t *testing.T) {
				requireViolations(t, err, map[string]domain.ViolationKind{field: kind})
			})
		}
	}
	// Accepted: non-ASCII text and surrounding white space, which is trimmed.
	in := validInput()
	in.DatabaseName, in.UserName = " base-ü\t", "\r\nutilisateur "
	spec, _, err := domain.ParseSpec(in)
	if err != nil || spec.DatabaseName != "base-ü" || spec.UserName != "utilisateur" {
		t.Errorf("ParseSpec = %q, %q, %v; want trimmed values accepted", spec.DatabaseName, spec.UserName, err)
	}
}

func createdConnection(t *testing.T) *domain.Connection {
	t.Helper()
	spec, _, err := domain.ParseSpec(validInput())
	if err != nil {
		t.Fatal(err)
	}
	creds := domain.Credentials{Password: domain.SealedSecret{Scheme: "test", KeyName: "k", Ciphertext: "c"}}
	conn, err := domain.Create("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", domain.DefaultOrganization, spec, creds,
		domain.Origin{Actor: "test", At: time.Now()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func TestParseMetadata(t *testing.T) {
	in := map[string]string{"team": "data", "env": "prod"}
	md, err := domain.ParseMetadata(in)
	if err != nil || len(md) != 2 || md["team"] != "data" {
		t.Fatalf("ParseMetadata = %v, %v", md, err)
	}
	in["team"] = "changed"
	if md["team"] != "data" {
		t.Error("ParseMetadata kept the caller's map instead of a copy")
	}
	if md, err := domain.ParseMetadata(map[string]string{}); md != nil || err != nil {
		t.Errorf("empty metadata = %v, %v; want nil, nil", md, err)
	}
	_, err = domain.ParseMetadata(map[string]string{"$where": "v", "ok": "v", "a.b": "\x00"})
	requireViolations(t, err, map[string]domain.ViolationKind{"metadata.$where": domain.ViolationBadValue, "metadata.a.b": domain.ViolationBadValue})
}
