package dbprobe

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// tlsSetupError is a problem with the stored certificates themselves (not PEM, key does not match the
// certificate). It is reported as TLS_FAILED: the person has to fix the SSL settings.
type tlsSetupError struct{ msg string }

func (e *tlsSetupError) Error() string { return e.msg }

// tlsMaterial is the parsed CA pool and client certificate of an SSL setting.
type tlsMaterial struct {
	roots  *x509.CertPool // nil: the system roots
	client []tls.Certificate
}

func parseTLSMaterial(s *SSL) (tlsMaterial, error) {
	var m tlsMaterial
	if s == nil {
		return m, nil
	}
	if strings.TrimSpace(s.CA) != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(s.CA)) {
			return m, &tlsSetupError{"the CA certificate is not a PEM encoded X.509 certificate"}
		}
		m.roots = pool
	}
	hasCert, hasKey := strings.TrimSpace(s.Cert) != "", len(s.Key) > 0
	switch {
	case hasCert && hasKey:
		// The key is parsed in memory only; it is never written to disk. The parse error text of
		// crypto/tls does not include key material.
		c, err := tls.X509KeyPair([]byte(s.Cert), s.Key)
		if err != nil {
			return m, &tlsSetupError{"the client certificate and key cannot be used together: " + err.Error()}
		}
		m.client = []tls.Certificate{c}
	case hasCert:
		return m, &tlsSetupError{"a client certificate was given without its private key"}
	case hasKey:
		return m, &tlsSetupError{"a client private key was given without its certificate"}
	}
	return m, nil
}

// verify picks how the server certificate is checked.
type verify int

const (
	verifyNone  verify = iota // encrypt only (libpq "require" without a CA, MySQL "skip-verify")
	verifyChain               // chain to the CA, any host name (libpq "verify-ca")
	verifyFull                // chain and host name (libpq "verify-full", MySQL "true")
)

func (m tlsMaterial) config(host string, v verify) *tls.Config {
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: m.client,
		ServerName:   host,
	}
	switch v {
	case verifyNone:
		c.InsecureSkipVerify = true
	case verifyChain:
		// crypto/tls cannot verify a chain without a host name, so verification is switched off and
		// redone here without the name check.
		c.InsecureSkipVerify = true
		roots := m.roots
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tls: server presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, ic := range cs.PeerCertificates[1:] {
				inter.AddCert(ic)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			if err != nil {
				return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
			}
			return nil
		}
	case verifyFull:
		c.RootCAs = m.roots
	}
	return c
}

// invalidMode is returned for an SSL mode the engine does not define.
func invalidMode(e Engine, mode string, valid ...string) error {
	return &InvalidTargetError{Field: "ssl.mode", Reason: fmt.Sprintf("%q is not an SSL mode of %s (valid: %s)", mode, e, strings.Join(valid, ", "))}
}

func sslMode(s *SSL) string {
	if s == nil {
		return ""
	}
	return strings.ToLower(strings.TrimSpace(s.Mode))
}
