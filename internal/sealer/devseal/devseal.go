// Package devseal is the local development Sealer used by the embedded
// stack: AES-256-GCM with a key kept in a file, so a restarted process can
// still unseal what it sealed. It has no key management worth the name and
// must never run in production; see Allowed.
package devseal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/connreg/registry/domain"
)

// Scheme is the domain.SealedSecret scheme of everything this package seals.
const Scheme = "dev"

// Prefix starts every devseal ciphertext, so it can never be mistaken for
// Vault's "vault:vN:" output.
const Prefix = "devseal:v1:"

// KeyFile is the name of the key file inside the directory given to New.
const KeyFile = "devseal.key"

const keySize = 32

var (
	// ErrProduction is returned by Allowed for a production environment:
	// the development sealer keeps its key on local disk.
	ErrProduction = errors.New("devseal: the development sealer is refused when ENV=production; configure Vault (VAULT_ADDR)")
	// ErrRejected: the ciphertext does not open under this key and
	// binding (sealed for another connection, tampered with, or made with a
	// different key file).
	ErrRejected = errors.New("devseal: ciphertext rejected")
	// ErrScheme: the secret was not sealed by devseal.
	ErrScheme = errors.New("devseal: secret sealed by another scheme")
)

// Allowed reports whether the development sealer may run in env (the
// service's ENV variable). The composition root calls it before New.
func Allowed(env string) error {
	switch strings.ToLower(strings.TrimSpace(env)) {
	case "production", "prod":
		return ErrProduction
	}
	return nil
}

// Sealer seals with AES-256-GCM; the binding (connection id) is the
// additional authenticated data, so a ciphertext moved to another
// connection fails to open. Safe for concurrent use.
type Sealer struct {
	aead    cipher.AEAD
	keyName string
}

// New loads the key from dir/KeyFile, creating dir (0700) and the key
// (random, 0600) when missing. Two processes starting together agree on one
// key: the file is published with an atomic link.
func New(dir string) (*Sealer, error) {
	if dir == "" {
		return nil, errors.New("devseal: empty key directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devseal: key directory: %w", err)
	}
	path := filepath.Join(dir, KeyFile)
	key, err := readKey(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := createKey(dir, path); err != nil {
			return nil, err
		}
		key, err = readKey(path)
	}
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("devseal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("devseal: %w", err)
	}
	sum := sha256.Sum256(key)
	return &Sealer{aead: aead, keyName: "dev-" + hex.EncodeToString(sum[:4])}, nil
}

func readKey(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(key) != keySize {
		return nil, fmt.Errorf("devseal: key file %s must hold %d hex-encoded bytes", path, keySize)
	}
	return key, nil
}

func createKey(dir, path string) error {
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("devseal: %w", err)
	}
	tmp, err := os.CreateTemp(dir, KeyFile+".tmp*")
	if err != nil {
		return fmt.Errorf("devseal: create key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("devseal: create key: %w", err)
	}
	if _, err := tmp.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("devseal: create key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("devseal: create key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("devseal: create key: %w", err)
	}
	// Link fails if another process published its key first; then both
	// use that one.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("devseal: create key: %w", err)
	}
	return nil
}

// Seal encrypts plaintext for the connection named by binding. The result's
// Ciphertext is Prefix followed by base64(nonce || sealed box).
func (s *Sealer) Seal(_ context.Context, binding string, plaintext []byte) (domain.SealedSecret, error) {
	if binding == "" {
		return domain.SealedSecret{}, errors.New("devseal: empty binding")
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return domain.SealedSecret{}, fmt.Errorf("devseal: %w", err)
	}
	box := s.aead.Seal(nonce, nonce, plaintext, []byte(binding))
	return domain.SealedSecret{
		Scheme:     Scheme,
		KeyName:    s.keyName,
		Ciphertext: Prefix + base64.RawStdEncoding.EncodeToString(box),
	}, nil
}

// Describe returns the secret as it is: a development ciphertext opens only
// with the registry's own key file, so there is nothing a downstream service
// could use.
func (s *Sealer) Describe(_ string, sealed domain.SealedSecret) domain.SealedSecret { return sealed }

// Unseal decrypts a secret sealed for binding; any other binding, a
// tampered ciphertext or another key file fails with ErrRejected.
func (s *Sealer) Unseal(_ context.Context, binding string, sealed domain.SealedSecret) ([]byte, error) {
	if sealed.Scheme != Scheme || !strings.HasPrefix(sealed.Ciphertext, Prefix) {
		return nil, fmt.Errorf("devseal: secret %s: %w", sealed, ErrScheme)
	}
	if sealed.KeyName != s.keyName {
		return nil, fmt.Errorf("devseal: secret sealed with key %s, this key is %s (was the key file replaced?): %w",
			sealed.KeyName, s.keyName, ErrRejected)
	}
	box, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(sealed.Ciphertext, Prefix))
	if err != nil || len(box) < s.aead.NonceSize()+s.aead.Overhead() {
		return nil, fmt.Errorf("devseal: malformed ciphertext: %w", ErrRejected)
	}
	n := s.aead.NonceSize()
	plaintext, err := s.aead.Open(nil, box[:n], box[n:], []byte(binding))
	if err != nil {
		return nil, fmt.Errorf("devseal: ciphertext does not open for this binding: %w", ErrRejected)
	}
	if plaintext == nil {
		plaintext = []byte{}
	}
	return plaintext, nil
}

// Rewrap checks that the secret opens for binding and returns it unchanged:
// the development key has a single version, so nothing is ever stale.
func (s *Sealer) Rewrap(ctx context.Context, binding string, sealed domain.SealedSecret) (domain.SealedSecret, error) {
	if _, err := s.Unseal(ctx, binding, sealed); err != nil {
		return domain.SealedSecret{}, err
	}
	return sealed, nil
}
