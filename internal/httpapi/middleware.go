package httpapi

import (
	"errors"
	"log/slog"
	"net/url"
	"regexp"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

const (
	headerRequestID = "X-Request-Id"
	ctxRequestID    = "requestId"
)

var safeRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// withRequestID takes the caller's X-Request-Id when it is safe to log, or
// makes one, and echoes it.
func withRequestID(c *gin.Context) {
	id := c.GetHeader(headerRequestID)
	if !safeRequestID.MatchString(id) {
		id = uuid.NewString()
	}
	c.Set(ctxRequestID, id)
	c.Header(headerRequestID, id)
	c.Next()
}

func requestID(c *gin.Context) string { return c.GetString(ctxRequestID) }

// accessLog logs one line per request: never a header value or a body, which
// may hold credentials.
func accessLog(logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		p := principal(c) // who the token named; empty when authentication failed
		logger.Info("http request", append([]any{
			"requestId", requestID(c),
			"method", c.Request.Method,
			"route", c.FullPath(),
			"status", c.Writer.Status(),
			"actor", p.Subject,
			"organization", p.Organization,
			"durationMs", float64(time.Since(start).Microseconds()) / 1000}, traceIDs(c)...)...)
	}
}

var errPanic = errors.New("panic in handler")

// recoverer turns a panic into a logged 500 without the panic's value in the
// answer.
func recoverer(logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if p := recover(); p != nil {
				logger.Error("panic in handler", "requestId", requestID(c), "route", c.FullPath())
				respondError(c, logger, errPanic)
			}
		}()
		c.Next()
	}
}

// decodableQuery refuses a query string that does not decode (a bad percent
// escape such as %zz, or a ';' separator): net/url drops such a pair
// silently, and a filter the caller sent must never be ignored.
func decodableQuery(logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		if _, err := url.ParseQuery(c.Request.URL.RawQuery); err != nil {
			respondError(c, logger, badRequest(CodeInvalidQueryParam, "Invalid query parameter",
				"The query string cannot be decoded: every '%' must start a %XX escape, and parameters are not separated by ';'.", nil))
			return
		}
		c.Next()
	}
}
