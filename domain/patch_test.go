package domain_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/connreg/registry/domain"
)

// stored is a live PostgreSQL connection of organization "org-a" with a
// sealed password and, when withKey, a client certificate and its sealed key.
func stored(t *testing.T, withKey bool) *domain.Connection {
	t.Helper()
	in := validInput()
	creds := domain.Credentials{Password: domain.SealedSecret{Scheme: "test", KeyName: "k", Ciphertext: "sealed-pw"}}
	if withKey {
		in.SSL = &domain.SSLInput{Mode: "verify-full", Cert: fixtures().cert, Key: fixtures().pkcs8Key}
		creds.SSLKey = domain.SealedSecret{Scheme: "test", KeyName: "k", Ciphertext: "sealed-key"}
	}
	spec, _, err := domain.ParseSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	c, err := domain.Create("0190a000-0000-7000-8000-000000000001", "org-a", spec, creds, domain.Origin{Actor: "alice"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPatchMovingTheTargetMustResendTheSecrets: a stored password (or client
// key) never follows a connection to another server. Whoever changes host,
// port, type or ssl must know the secret and send it again.
func TestPatchMovingTheTargetMustResendTheSecrets(t *testing.T) {
	fx := fixtures()
	pw := []byte("a-new-password")
	port := 6432
	for _, tt := range []struct {
		name        string
		withKey     bool
		in          domain.PatchInput
		wantChanged []string // nil: accepted
		wantMissing []string
	}{
		{name: "host without password", in: domain.PatchInput{Host: ptr("attacker.example.net")},
			wantChanged: []string{"host"}, wantMissing: []string{"password"}},
		{name: "port without password", in: domain.PatchInput{Port: &port},
			wantChanged: []string{"port"}, wantMissing: []string{"password"}},
		{name: "type without password", in: domain.PatchInput{Type: ptr("MYSQL")},
			wantChanged: []string{"type"}, wantMissing: []string{"password"}},
		{name: "ssl added without password", in: domain.PatchInput{SSL: &domain.SSLInput{Mode: "disable"}},
			wantChanged: []string{"ssl"}, wantMissing: []string{"password"}},
		{name: "ssl removed without password", withKey: true, in: domain.PatchInput{RemoveSSL: true},
			wantChanged: []string{"ssl"}, wantMissing: []string{"password"}},
		{name: "host and port without password", in: domain.PatchInput{Host: ptr("x.example.net"), Port: &port},
			wantChanged: []string{"host", "port"}, wantMissing: []string{"password"}},
		{name: "host with password but stored client key kept", withKey: true,
			in:          domain.PatchInput{Host: ptr("x.example.net"), Password: pw},
			wantChanged: []string{"host"}, wantMissing: []string{"ssl.key"}},
		{name: "host without password nor key", withKey: true, in: domain.PatchInput{Host: ptr("x.example.net")},
			wantChanged: []string{"host"}, wantMissing: []string{"password", "ssl.key"}},
		{name: "port with password, stored client key kept", withKey: true,
			in:          domain.PatchInput{Port: &port, Password: pw},
			wantChanged: []string{"port"}, wantMissing: []string{"ssl.key"}},

		{name: "host with password", in: domain.PatchInput{Host: ptr("x.example.net"), Password: pw}},
		{name: "type with password", in: domain.PatchInput{Type: ptr("MYSQL"), Password: pw}},
		{name: "host with password and key", withKey: true,
			in: domain.PatchInput{Host: ptr("x.example.net"), Password: pw, SSL: &domain.SSLInput{Mode: "verify-full", Cert: fx.cert, Key: fx.pkcs8Key}}},
		{name: "ssl removed with password", withKey: true, in: domain.PatchInput{RemoveSSL: true, Password: pw}},
		{name: "same host again", in: domain.PatchInput{Host: ptr("db.example.com")}},
		{name: "database and user name only", in: domain.PatchInput{DatabaseName: ptr("other"), UserName: ptr("someone")}},
		{name: "metadata only", withKey: true, in: domain.PatchInput{SetMetadata: true, Metadata: map[string]string{"team": "x"}}},
		{name: "rename only", in: domain.PatchInput{ConfigName: ptr("renamed-db")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := stored(t, tt.withKey)
			_, _, err := c.ParsePatch(tt.in)
			if tt.wantChanged == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var e *domain.SecretNotResentError
			if !errors.As(err, &e) {
				t.Fatalf("error = %v (%T), want *domain.SecretNotResentError", err, err)
			}
			if !slices.Equal(e.Changed, tt.wantChanged) || !slices.Equal(e.Missing, tt.wantMissing) {
				t.Errorf("changed %v missing %v, want %v %v", e.Changed, e.Missing, tt.wantChanged, tt.wantMissing)
			}
		})
	}
}

func TestScopeContainsOnlyItsOrganizationAndProducts(t *testing.T) {
	c := stored(t, false) // org-a, product my-product
	for _, tt := range []struct {
		name  string
		scope domain.Scope
		want  bool
	}{
		{"same organization, every product", domain.Scope{Organization: "org-a"}, true},
		{"same organization, product allowed", domain.Scope{Organization: "org-a", Products: []string{"x", "my-product"}}, true},
		{"same organization, product not allowed", domain.Scope{Organization: "org-a", Products: []string{"x"}}, false},
		{"same organization, no product allowed", domain.Scope{Organization: "org-a", Products: []string{}}, false},
		{"other organization", domain.Scope{Organization: "org-b"}, false},
		{"empty scope", domain.Scope{}, false},
		{"narrowed to the product", domain.Scope{Organization: "org-a"}.Narrow("my-product"), true},
		{"narrowed to another product", domain.Scope{Organization: "org-a"}.Narrow("x"), false},
		{"narrowing cannot widen", domain.Scope{Organization: "org-a", Products: []string{"x"}}.Narrow("my-product"), false},
		{"the registry's own work", domain.EveryOrganization(), true},
	} {
		if got := tt.scope.Contains(c); got != tt.want {
			t.Errorf("%s: Contains = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestParseOrganizationRefusesSubjectSyntax(t *testing.T) {
	for _, bad := range []string{"", "a.b", "*", ">", "a b", string(make([]byte, 101))} {
		if _, err := domain.ParseOrganization(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, good := range []string{"default", "Org_1", "acme-corp"} {
		if got, err := domain.ParseOrganization(good); err != nil || got != good {
			t.Errorf("%q: %q %v", good, got, err)
		}
	}
}
