// Package sealertest is the contract every Sealer implementation (Vault
// transit, devseal) must meet, written once and run against each of them,
// so that the development sealer cannot drift from the production one.
package sealertest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connreg/registry/domain"
)

// Sealer is what the suite exercises: seal for a binding, unseal for the
// same binding, rewrap to the newest key version.
type Sealer interface {
	Seal(ctx context.Context, binding string, plaintext []byte) (domain.SealedSecret, error)
	Unseal(ctx context.Context, binding string, sealed domain.SealedSecret) ([]byte, error)
	Rewrap(ctx context.Context, binding string, sealed domain.SealedSecret) (domain.SealedSecret, error)
}

// prefixes maps each known scheme to the prefix its ciphertexts carry. A
// new implementation adds its scheme here, so the suite checks it too.
var prefixes = map[string]string{
	"vault-transit": "vault:v",
	"dev":           "devseal:v1:",
}

// Run runs the contract against the sealer newSealer returns (one per
// subtest; it should register its own cleanup with t.Cleanup).
func Run(t *testing.T, newSealer func(t *testing.T) Sealer) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s Sealer)
	}{
		{"RoundTrip", testRoundTrip},
		{"BindingIsEnforced", testBinding},
		{"CiphertextHidesPlaintext", testHidesPlaintext},
		{"SchemePrefix", testPrefix},
		{"FreshCiphertextEachTime", testFresh},
		{"EmptyPlaintext", testEmpty},
		{"LargePlaintext", testLarge},
		{"TamperedCiphertextFails", testTampered},
		{"RewrapKeepsPlaintext", testRewrap},
		{"Concurrent", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newSealer(t))
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func seal(t *testing.T, s Sealer, binding string, pt []byte) domain.SealedSecret {
	t.Helper()
	sealed, err := s.Seal(ctx(t), binding, pt)
	if err != nil {
		t.Fatalf("Seal(%q): %v", binding, err)
	}
	if sealed.IsZero() || sealed.Scheme == "" || sealed.KeyName == "" {
		t.Fatalf("Seal(%q) = %#v: want scheme, key name and ciphertext", binding, sealed)
	}
	return sealed
}

func unseal(t *testing.T, s Sealer, binding string, sealed domain.SealedSecret) []byte {
	t.Helper()
	pt, err := s.Unseal(ctx(t), binding, sealed)
	if err != nil {
		t.Fatalf("Unseal(%q): %v", binding, err)
	}
	return pt
}

func testRoundTrip(t *testing.T, s Sealer) {
	for _, pt := range []string{"hunter2", "p@ss w0rd/with:colons", "ünïcødé 密码", "\x00\x01\xff binary"} {
		sealed := seal(t, s, "conn-roundtrip", []byte(pt))
		if got := unseal(t, s, "conn-roundtrip", sealed); string(got) != pt {
			t.Errorf("round trip of %q gave %q", pt, got)
		}
	}
}

func testBinding(t *testing.T, s Sealer) {
	sealed := seal(t, s, "conn-a", []byte("password-of-a"))
	pt, err := s.Unseal(ctx(t), "conn-b", sealed)
	if err == nil {
		t.Fatalf("ciphertext of conn-a unsealed under conn-b as %q", pt)
	}
	if domain.IsUnavailable(err) {
		t.Errorf("wrong binding reported as an outage (callers would retry): %v", err)
	}
	if strings.Contains(err.Error(), "password-of-a") {
		t.Errorf("error text contains the plaintext: %v", err)
	}
	if _, err := s.Rewrap(ctx(t), "conn-b", sealed); err == nil {
		t.Errorf("Rewrap under another binding succeeded")
	}
	if got := unseal(t, s, "conn-a", sealed); string(got) != "password-of-a" {
		t.Errorf("unseal under the right binding gave %q", got)
	}
}

func testHidesPlaintext(t *testing.T, s Sealer) {
	pt := []byte("correct-horse-battery-staple-0123456789")
	sealed := seal(t, s, "conn-hide", pt)
	for _, form := range []string{
		string(pt),
		base64.StdEncoding.EncodeToString(pt),
		base64.RawStdEncoding.EncodeToString(pt),
		base64.URLEncoding.EncodeToString(pt),
		hex.EncodeToString(pt),
	} {
		for _, where := range []string{sealed.Ciphertext, sealed.String(), fmt.Sprint(sealed), fmt.Sprintf("%+v", sealed)} {
			if strings.Contains(where, form) {
				t.Errorf("sealed form %q contains the plaintext (as %q)", where, form)
			}
		}
	}
	if strings.Contains(sealed.String(), sealed.Ciphertext) {
		t.Errorf("String() prints the whole ciphertext: %s", sealed.String())
	}
}

func testPrefix(t *testing.T, s Sealer) {
	sealed := seal(t, s, "conn-prefix", []byte("x"))
	prefix, ok := prefixes[sealed.Scheme]
	if !ok {
		t.Fatalf("unknown scheme %q: add it to sealertest.prefixes", sealed.Scheme)
	}
	if !strings.HasPrefix(sealed.Ciphertext, prefix) {
		t.Errorf("scheme %q ciphertext %.20q... lacks prefix %q", sealed.Scheme, sealed.Ciphertext, prefix)
	}
	for scheme, other := range prefixes {
		if scheme != sealed.Scheme && strings.HasPrefix(sealed.Ciphertext, other) {
			t.Errorf("scheme %q ciphertext carries the prefix of %q", sealed.Scheme, scheme)
		}
	}
}

func testFresh(t *testing.T, s Sealer) {
	a := seal(t, s, "conn-fresh", []byte("same"))
	b := seal(t, s, "conn-fresh", []byte("same"))
	if a.Ciphertext == b.Ciphertext {
		t.Errorf("sealing the same plaintext twice gave the same ciphertext (nonce reuse or deterministic encryption)")
	}
}

func testEmpty(t *testing.T, s Sealer) {
	sealed := seal(t, s, "conn-empty", []byte{})
	if got := unseal(t, s, "conn-empty", sealed); len(got) != 0 {
		t.Errorf("empty plaintext came back as %q", got)
	}
}

func testLarge(t *testing.T, s Sealer) {
	pt := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16) // 64 KiB: a big PEM bundle
	sealed := seal(t, s, "conn-large", pt)
	if got := unseal(t, s, "conn-large", sealed); !bytes.Equal(got, pt) {
		t.Errorf("64 KiB plaintext came back different (%d bytes)", len(got))
	}
}

func testTampered(t *testing.T, s Sealer) {
	sealed := seal(t, s, "conn-tamper", []byte("secret-value"))
	ct := []byte(sealed.Ciphertext)
	// A character in the middle is past any prefix and, unlike the last
	// ones, never only base64 padding bits.
	i := len(ct) / 2
	if ct[i] == 'A' {
		ct[i] = 'B'
	} else {
		ct[i] = 'A'
	}
	tampered := sealed
	tampered.Ciphertext = string(ct)
	if pt, err := s.Unseal(ctx(t), "conn-tamper", tampered); err == nil {
		t.Errorf("tampered ciphertext unsealed as %q", pt)
	}
	other := sealed
	other.Scheme = "no-such-scheme"
	if _, err := s.Unseal(ctx(t), "conn-tamper", other); err == nil {
		t.Errorf("secret of an unknown scheme was accepted")
	}
}

func testRewrap(t *testing.T, s Sealer) {
	sealed := seal(t, s, "conn-rewrap", []byte("rotate-me"))
	again, err := s.Rewrap(ctx(t), "conn-rewrap", sealed)
	if err != nil {
		t.Fatalf("Rewrap: %v", err)
	}
	if again.Scheme != sealed.Scheme {
		t.Errorf("Rewrap changed the scheme from %q to %q", sealed.Scheme, again.Scheme)
	}
	if got := unseal(t, s, "conn-rewrap", again); string(got) != "rotate-me" {
		t.Errorf("rewrapped secret unsealed as %q", got)
	}
}

func testConcurrent(t *testing.T, s Sealer) {
	const n = 150
	var wg sync.WaitGroup
	errs := make(chan error, n)
	c := ctx(t)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			binding := fmt.Sprintf("conn-%03d", i)
			pt := fmt.Sprintf("password-%03d-%s", i, strings.Repeat("x", i))
			sealed, err := s.Seal(c, binding, []byte(pt))
			if err != nil {
				errs <- fmt.Errorf("goroutine %d: Seal: %w", i, err)
				return
			}
			got, err := s.Unseal(c, binding, sealed)
			if err != nil {
				errs <- fmt.Errorf("goroutine %d: Unseal: %w", i, err)
				return
			}
			if string(got) != pt {
				errs <- fmt.Errorf("goroutine %d: got another caller's plaintext (%d bytes)", i, len(got))
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if err := errors.Join(all...); err != nil {
		t.Error(err)
	}
}
