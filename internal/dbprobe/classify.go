package dbprobe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	mssql "github.com/microsoft/go-mssqldb"
	"github.com/sijms/go-ora/v2/network"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// schemaNotFoundError is raised by the engine checks that look the schema up.
type schemaNotFoundError struct{ schema string }

func (e *schemaNotFoundError) Error() string {
	return fmt.Sprintf("schema %q does not exist", e.schema)
}

// classify maps a driver error to a Reason. Driver codes are checked first (they are exact), then the
// standard library's typed errors, then, for drivers that flatten errors into text, well-known phrases.
func classify(engine Engine, err error, ctx context.Context) Reason {
	var schemaErr *schemaNotFoundError
	if errors.As(err, &schemaErr) {
		return ReasonSchemaNotFound
	}
	if r := classifyCode(err); r != "" {
		return r
	}
	var setupErr *tlsSetupError
	if errors.As(err, &setupErr) || isTLSError(err) {
		return ReasonTLSFailed
	}
	text := classifyText(err.Error())
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonConnectionRefused
	case errors.As(err, &dnsErr) && !dnsErr.IsTimeout,
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EADDRNOTAVAIL):
		return ReasonHostUnreachable
	case text == ReasonConnectionRefused || text == ReasonTLSFailed || text == ReasonAuthFailed:
		return text // drivers that flatten the cause into text, then time out retrying
	case errors.Is(err, context.DeadlineExceeded), errors.Is(ctx.Err(), context.DeadlineExceeded), isNetTimeout(err):
		return ReasonTimeout
	}
	return text
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isTLSError(err error) bool {
	var (
		verr  *tls.CertificateVerificationError
		uaErr x509.UnknownAuthorityError
		hnErr x509.HostnameError
		ciErr x509.CertificateInvalidError
		rhErr tls.RecordHeaderError
		alErr tls.AlertError
		ecErr *tls.ECHRejectionError
	)
	return errors.As(err, &verr) || errors.As(err, &uaErr) || errors.As(err, &hnErr) ||
		errors.As(err, &ciErr) || errors.As(err, &rhErr) || errors.As(err, &alErr) || errors.As(err, &ecErr) ||
		errors.Is(err, mysql.ErrNoTLS)
}

// classifyCode reads the server's own error codes.
func classifyCode(err error) Reason {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28000": // invalid_authorization_specification: also a missing or untrusted client certificate
			if strings.Contains(strings.ToLower(pgErr.Message), "certificate") {
				return ReasonTLSFailed
			}
			return ReasonAuthFailed
		case "28P01": // invalid_password
			return ReasonAuthFailed
		case "3D000": // invalid_catalog_name
			return ReasonDatabaseNotFound
		case "3F000": // invalid_schema_name
			return ReasonSchemaNotFound
		}
		return ""
	}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		switch myErr.Number {
		case 1045, 1698, 1251: // access denied (password), no password for unix_socket user, auth plugin unsupported
			return ReasonAuthFailed
		case 1049: // unknown database
			return ReasonDatabaseNotFound
		case 1044: // access denied to database: MySQL hides whether it exists from an unprivileged user
			return ReasonDatabaseNotFound
		}
		return ""
	}
	var msErr mssql.Error
	if errors.As(err, &msErr) {
		switch msErr.Number {
		case 18456, 18452, 18486, 18487, 18488: // login failed, untrusted domain, locked out, expired, must change
			return ReasonAuthFailed
		case 4060: // cannot open database requested by the login
			return ReasonDatabaseNotFound
		}
		return ""
	}
	var oraErr *network.OracleError
	if errors.As(err, &oraErr) {
		switch oraErr.ErrCode {
		case 1017, 28000, 28001, 1005: // invalid credentials, locked, expired, null password
			return ReasonAuthFailed
		case 12514, 12505: // unknown service name / SID
			return ReasonDatabaseNotFound
		case 12541: // no listener
			return ReasonConnectionRefused
		case 12170: // connect timeout
			return ReasonTimeout
		}
		return ""
	}
	var cmdErr mongo.CommandError
	if errors.As(err, &cmdErr) {
		switch cmdErr.Code {
		case 18, 13: // AuthenticationFailed, Unauthorized
			return ReasonAuthFailed
		}
	}
	return ""
}

// classifyText is the last resort for drivers that lose error types (MongoDB server selection, go-ora).
func classifyText(msg string) Reason {
	m := strings.ToLower(msg)
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(m, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("connection refused"):
		return ReasonConnectionRefused
	case has("x509:", "tls:", "certificate", "handshake failure", "server refused tls"):
		return ReasonTLSFailed
	case has("authentication failed", "auth error", "sasl", "password authentication", "login failed", "access denied"):
		return ReasonAuthFailed
	case has("no such host", "no route to host", "network is unreachable", "host is unreachable"):
		return ReasonHostUnreachable
	case has("i/o timeout", "deadline exceeded", "timed out", "context deadline"):
		return ReasonTimeout
	}
	return ReasonUnknown
}

// maxMessage keeps driver detail readable in an API response.
const maxMessage = 600

// describe builds the Result message: what it means for the person, then the driver's own words with
// every form of the secrets removed.
func describe(t Target, r Reason, err error, timeout time.Duration) string {
	addr := net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
	var head string
	switch r {
	case ReasonHostUnreachable:
		head = fmt.Sprintf("host %q could not be resolved or reached; check the host name and the network path", t.Host)
	case ReasonConnectionRefused:
		head = fmt.Sprintf("nothing accepted the connection on %s; check the port and that the server is running", addr)
	case ReasonTimeout:
		head = fmt.Sprintf("no complete answer from %s within %s; check firewalls and that this is a %s server", addr, timeout, t.Engine)
	case ReasonTLSFailed:
		head = "the TLS setup or handshake failed; check the SSL mode, the CA certificate and the server certificate's host name"
	case ReasonAuthFailed:
		head = fmt.Sprintf("the server rejected user %q; check the user name and password", t.User)
	case ReasonDatabaseNotFound:
		head = fmt.Sprintf("database %q does not exist or user %q may not use it", t.Database, t.User)
	case ReasonSchemaNotFound:
		head = fmt.Sprintf("schema %q does not exist in database %q", t.Schema, t.Database)
	default:
		head = "the connection test failed"
	}
	detail := scrub(err.Error(), t)
	if len(detail) > maxMessage {
		detail = detail[:maxMessage] + "..."
	}
	return head + ": " + detail
}

// scrub removes the password and the client key from driver text, in the encodings a driver could have
// used to quote them (raw, URL-escaped, Go-quoted).
func scrub(s string, t Target) string {
	var secrets []string
	add := func(b []byte) {
		if len(b) == 0 {
			return
		}
		raw := string(b)
		secrets = append(secrets, raw, url.QueryEscape(raw), url.PathEscape(raw), strings.Trim(strconv.Quote(raw), `"`))
	}
	add(t.Password)
	if t.SSL != nil {
		add(t.SSL.Key)
		for _, line := range strings.Split(string(t.SSL.Key), "\n") { // a driver may quote one line of the PEM
			if l := strings.TrimSpace(line); len(l) >= 16 && !strings.HasPrefix(l, "-----") {
				secrets = append(secrets, l)
			}
		}
	}
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	return s
}
