package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/internal/auth"
	"github.com/connreg/registry/readmodel"
)

// Error codes. The FET codes are those of the published Lerian connection
// API, so that a client written for it keeps working; REG codes are the
// registry's own, for conditions that API does not name.
const (
	CodeBadValue           = "FET-0001"
	CodeUnexpectedField    = "FET-0400"
	CodeInvalidRequired    = "FET-0402"
	CodeInvalidHeader      = "FET-0403"
	CodeInvalidPathParam   = "FET-0404"
	CodeInvalidQueryParam  = "FET-0405"
	CodeLimitTooLarge      = "FET-0406"
	CodeMetadataNested     = "FET-0410"
	CodeMetadataValueLong  = "FET-0411"
	CodeMetadataKeyLong    = "FET-0412"
	CodeInvalidSSLMode     = "FET-0413"
	CodeHostRefused        = "FET-0414"
	CodeNotFound           = "FET-1001"
	CodeDuplicateName      = "FET-1002"
	CodeConflict           = "REG-0409"
	CodeStaleVersion       = "REG-0412"
	CodeIdempotencyReuse   = "REG-0422"
	CodeSchemaMismatch     = "REG-4221"
	CodeDatabaseUnreadable = "REG-0502"
	CodeBodyTooLarge       = "REG-0413"
	CodeMethodNotAllowed   = "REG-0405"
	CodeHeadersTooLarge    = "REG-0431"
	CodeProtocol           = "REG-0400"
	CodeUnsupportedMedia   = "REG-0415"
	CodeRateLimited        = "REG-0429"
	CodeInternal           = "REG-0500"
	CodeEventStoreDown     = "REG-5031"
	CodeReadModelDown      = "REG-5032"
	CodeSealerDown         = "REG-5033"
	CodeTestsBusy          = "REG-5034"
	CodeOutcomeUnknown     = "REG-5035"
	CodeIdentityDown       = "REG-5036"
	CodeUnauthenticated    = "REG-0401"
	CodeForbidden          = "REG-0403"
	CodeSecretNotResent    = "REG-0423"
	CodeDependencyDownElse = "REG-5030"
)

// ErrorBody is the one shape of every error response.
type ErrorBody struct {
	Code    string            `json:"code"`
	Title   string            `json:"title"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields"` // always present, empty when no field is at fault
	// Status and Errors are set by a failed validate-schema only, whose
	// answer is also the one of Lerian's manager.
	Status string        `json:"status,omitempty"`
	Errors []schemaError `json:"errors,omitempty"`
}

// MarshalJSON writes fields as {} when no field is at fault, never null, so
// that every error body has the same shape whichever code path built it.
func (b ErrorBody) MarshalJSON() ([]byte, error) {
	type plain ErrorBody
	if b.Fields == nil {
		b.Fields = map[string]string{}
	}
	return json.Marshal(plain(b))
}

// requestError is a refusal decided by the HTTP layer itself (malformed JSON,
// bad header, bad query parameter), already carrying its answer.
type requestError struct {
	status int
	body   ErrorBody
}

func (e *requestError) Error() string { return e.body.Code + ": " + e.body.Message }

func badRequest(code, title, message string, fields map[string]string) *requestError {
	return &requestError{status: http.StatusBadRequest, body: ErrorBody{Code: code, Title: title, Message: message, Fields: fields}}
}

// violationCodes ranks violation kinds: a response names the code of its
// highest-ranked violation and lists every field.
var violationCodes = []struct {
	kind domain.ViolationKind
	code string
}{
	{domain.ViolationUnknownField, CodeUnexpectedField},
	{domain.ViolationSSLMode, CodeInvalidSSLMode},
	{domain.ViolationMetadataNotFlat, CodeMetadataNested},
	{domain.ViolationMetadataValueTooLong, CodeMetadataValueLong},
	{domain.ViolationMetadataKeyTooLong, CodeMetadataKeyLong},
	{domain.ViolationMissing, CodeInvalidRequired},
	{domain.ViolationInvalid, CodeInvalidRequired},
	{domain.ViolationBadValue, CodeBadValue},
}

// headerFields are the paths of a ValidationError that name a header.
var headerFields = map[string]bool{"X-Product-Name": true}

// respondError is the one place where an error becomes an HTTP answer. Input
// errors keep their message; anything unexpected is logged with the request
// id and answered with a generic message, never with its text.
func respondError(c *gin.Context, logger *slog.Logger, err error) {
	status, body := classify(err)
	if status >= 500 {
		logger.Error("request failed", append([]any{"requestId", requestID(c), "method", c.Request.Method,
			"path", c.FullPath(), "status", status, "error", err.Error()}, traceIDs(c)...)...)
	}
	if body.Fields == nil {
		body.Fields = map[string]string{}
	}
	var limited *commands.RateLimitedError
	switch {
	case status == http.StatusUnauthorized:
		// RFC 6750 section 3: the challenge names what is wrong with the token.
		c.Header("WWW-Authenticate", `Bearer realm="connreg", error="invalid_token", error_description=`+strconv.Quote(body.Message))
	case status == http.StatusForbidden:
		challenge := `Bearer realm="connreg", error="insufficient_scope"`
		var scoped *auth.InsufficientScopeError
		if errors.As(err, &scoped) {
			challenge += `, scope="` + scoped.Scope + `"`
		}
		c.Header("WWW-Authenticate", challenge)
	case errors.As(err, &limited):
		c.Header("Retry-After", strconv.Itoa(int(math.Ceil(limited.RetryAfter.Seconds()))))
	case status == http.StatusServiceUnavailable:
		c.Header("Retry-After", "1")
	}
	c.AbortWithStatusJSON(status, body)
}

func classify(err error) (int, ErrorBody) {
	var (
		limited     *commands.RateLimitedError
		reqErr      *requestError
		validation  *domain.ValidationError
		unavailable *domain.UnavailableError
		mismatch    *SchemaMismatchError
		unreadable  *commands.DiscoveryFailedError
		badToken    *auth.InvalidTokenError
		noScope     *auth.InsufficientScopeError
		notResent   *domain.SecretNotResentError
	)
	switch {
	case errors.As(err, &badToken):
		return http.StatusUnauthorized, ErrorBody{Code: CodeUnauthenticated, Title: "Unauthenticated",
			Message: "A valid bearer token is required: " + badToken.Reason + "."}
	case errors.As(err, &noScope):
		return http.StatusForbidden, ErrorBody{Code: CodeForbidden, Title: "Insufficient scope",
			Message: "The token does not grant the scope " + noScope.Scope + "."}
	case errors.Is(err, domain.ErrProductNotAllowed):
		return http.StatusForbidden, ErrorBody{Code: CodeForbidden, Title: "Product not allowed",
			Message: "The token does not allow this product (X-Product-Name).",
			Fields:  map[string]string{"X-Product-Name": "not allowed by the token"}}
	case errors.As(err, &notResent):
		fields := make(map[string]string, len(notResent.Changed)+1)
		for _, f := range notResent.Changed {
			fields[f] = "changes the connection's target"
		}
		for _, s := range notResent.Missing {
			fields[s] = "must be sent again when " + strings.Join(notResent.Changed, ", ") + " change"
		}
		return http.StatusUnprocessableEntity, ErrorBody{Code: CodeSecretNotResent, Title: "Secret not sent again",
			Message: notResent.Error() + ".", Fields: fields}
	case errors.As(err, &mismatch):
		return http.StatusUnprocessableEntity, mismatchBody(mismatch)
	case errors.As(err, &unreadable):
		return http.StatusBadGateway, ErrorBody{Code: CodeDatabaseUnreadable, Title: "Database unreachable",
			Message: "The connection's database could not be read: " + unreadable.Message,
			Fields:  map[string]string{"reason": unreadable.Reason}}
	case errors.As(err, &reqErr):
		return reqErr.status, reqErr.body
	case errors.As(err, &validation):
		return http.StatusBadRequest, validationBody(validation)
	case errors.Is(err, domain.ErrNameTaken):
		return http.StatusConflict, ErrorBody{Code: CodeDuplicateName, Title: "Duplicate configName",
			Message: "A connection with this configName already exists in the organization."}
	case errors.Is(err, domain.ErrNotFound), errors.Is(err, readmodel.ErrNotFound):
		return http.StatusNotFound, ErrorBody{Code: CodeNotFound, Title: "Connection not found",
			Message: "No connection exists with this id."}
	case errors.As(err, &limited):
		return http.StatusTooManyRequests, ErrorBody{Code: CodeRateLimited, Title: "Too many tests",
			Message: "This connection was tested too often; retry after the time in Retry-After."}
	case errors.Is(err, commands.ErrTargetRefused):
		return http.StatusBadRequest, ErrorBody{Code: CodeHostRefused, Title: "Host refused",
			Message: "The host resolves to an address that the network policy does not allow tests to reach.",
			Fields:  map[string]string{"host": "resolves to a refused address"}}
	case errors.Is(err, commands.ErrProbeBusy):
		return http.StatusServiceUnavailable, ErrorBody{Code: CodeTestsBusy, Title: "Too many tests in progress",
			Message: "Too many connection tests are running; nothing was attempted. Retry later."}
	case errors.Is(err, domain.ErrVersionMismatch):
		return http.StatusPreconditionFailed, ErrorBody{Code: CodeStaleVersion, Title: "Stale version",
			Message: "The connection has changed since the version in If-Match; read it again and retry."}
	case errors.Is(err, domain.ErrIdempotencyKeyReused):
		return http.StatusUnprocessableEntity, ErrorBody{Code: CodeIdempotencyReuse, Title: "Idempotency key reused",
			Message: "This Idempotency-Key was used with a different request."}
	case errors.Is(err, domain.ErrConcurrentChange):
		return http.StatusConflict, ErrorBody{Code: CodeConflict, Title: "Concurrent change",
			Message: "The connection changed while the request ran; retry it."}
	case errors.Is(err, domain.ErrOutcomeUnknown):
		return http.StatusServiceUnavailable, ErrorBody{Code: CodeOutcomeUnknown, Title: "Outcome unknown",
			Message: "The event store did not confirm the write and it could not be checked: it may or may not " +
				"have been stored. Retry with the same Idempotency-Key to find out."}
	case errors.As(err, &unavailable):
		code, what := CodeDependencyDownElse, "A dependency"
		switch unavailable.Dependency {
		case domain.DependencyEventStore:
			code, what = CodeEventStoreDown, "The event store (NATS JetStream)"
		case domain.DependencyReadModel:
			code, what = CodeReadModelDown, "The read model store"
		case domain.DependencySealer:
			code, what = CodeSealerDown, "The credential sealer (Vault)"
		case domain.DependencyIdentityProvider:
			code, what = CodeIdentityDown, "The identity provider (token issuer)"
		}
		return http.StatusServiceUnavailable, ErrorBody{Code: code, Title: "Service unavailable",
			Message: what + " is unavailable; nothing was written. Retry later."}
	}
	return http.StatusInternalServerError, ErrorBody{Code: CodeInternal, Title: "Internal error",
		Message: "The request failed unexpectedly; the error was logged with its request id."}
}

func mismatchBody(m *SchemaMismatchError) ErrorBody {
	fields := make(map[string]string, len(m.Errors))
	for _, e := range m.Errors {
		path := "mappedFields." + e.DataSourceID
		reason := "no connection has this configName"
		switch e.Type {
		case missingTable:
			path, reason = path+"."+e.Table, "no such table or view"
		case missingField:
			path, reason = path+"."+e.Table+"."+e.Field, "no such field"
		case unreachable:
			reason = "the database could not be reached to read its schema"
		}
		fields[path] = reason
	}
	return ErrorBody{Code: CodeSchemaMismatch, Title: "Schema validation failed", Status: "failure", Errors: m.Errors, Fields: fields,
		Message: m.Error() + "; see errors."}
}

func validationBody(v *domain.ValidationError) ErrorBody {
	fields := make(map[string]string, len(v.Fields))
	header := false
	for p, viol := range v.Fields {
		fields[p] = viol.Reason
		header = header || headerFields[p]
	}
	if header {
		return ErrorBody{Code: CodeInvalidHeader, Title: "Invalid header", Message: v.Error(), Fields: fields}
	}
	for _, vc := range violationCodes {
		for _, viol := range v.Fields {
			if viol.Kind == vc.kind {
				return ErrorBody{Code: vc.code, Title: "Invalid request", Message: v.Error(), Fields: fields}
			}
		}
	}
	return ErrorBody{Code: CodeBadValue, Title: "Invalid request", Message: v.Error(), Fields: fields}
}
