package bootstrap_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/gin-gonic/gin"

	"github.com/connreg/registry/internal/httpapi"
)

// apiDocument loads and validates the embedded OpenAPI document once.
var apiDocument = sync.OnceValues(func() (routers.Router, error) {
	// The docs page's assets are text the validator only has to read.
	openapi3filter.RegisterBodyDecoder("text/css", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/javascript", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(httpapi.OpenAPIYAML)
	if err != nil {
		return nil, fmt.Errorf("load openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi.yaml is not a valid OpenAPI document: %w", err)
	}
	return gorillamux.NewRouter(doc)
})

// conformance wraps the service's handler in the component-test harness:
// every exchange is checked against the OpenAPI document. A response must
// match its operation (status, headers, body); a request the service
// accepted (2xx) must be valid too, so the document is never stricter or
// looser than the code about what works. Any mismatch fails the test.
func conformance(t *testing.T, next http.Handler) http.Handler {
	t.Helper()
	router, err := apiDocument()
	if err != nil {
		t.Fatal(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqBody, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(reqBody))
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		if err := checkExchange(router, r, reqBody, rec); err != nil {
			t.Errorf("OpenAPI mismatch: %s %s → %d: %v\nresponse: %.500s", r.Method, r.URL.RequestURI(), rec.Code, err, rec.Body.String())
		}
	})
}

func checkExchange(router routers.Router, r *http.Request, reqBody []byte, rec *httptest.ResponseRecorder) error {
	// The router matches on the full URL; a test server's request has only
	// the path.
	u := *r.URL
	u.Scheme, u.Host = "http", "localhost"
	if r.Host != "" {
		u.Host = r.Host
	}
	req := r.Clone(context.Background())
	req.URL = &u
	req.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := router.FindRoute(req)
	if err != nil {
		if rec.Code == http.StatusNotFound || rec.Code == http.StatusMethodNotAllowed {
			return nil // no such route or method: nothing to describe
		}
		return fmt.Errorf("the document has no operation for it: %w", err)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true, IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if rec.Code < 300 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			return fmt.Errorf("the service accepted a request the document refuses: %w", err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header(), Options: opts}
	out.SetBodyBytes(rec.Body.Bytes())
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return fmt.Errorf("the response does not match the document: %w", err)
	}
	return nil
}

// TestOpenAPIDescribesEveryRoute lists the routes Gin serves and requires an
// operation for each in the document, and no operation without a route.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	engine, ok := h.svc.Handler.(*gin.Engine)
	if !ok {
		t.Fatalf("the service's handler is %T, not a *gin.Engine", h.svc.Handler)
	}
	doc, err := openapi3.NewLoader().LoadFromData(httpapi.OpenAPIYAML)
	if err != nil {
		t.Fatal(err)
	}
	described := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			described[method+" "+path] = true
		}
	}
	served := map[string]bool{}
	for _, r := range engine.Routes() {
		path := r.Path
		for _, seg := range strings.Split(path, "/") {
			if strings.HasPrefix(seg, ":") || strings.HasPrefix(seg, "*") {
				path = strings.Replace(path, seg, "{"+seg[1:]+"}", 1)
			}
		}
		key := r.Method + " " + path
		served[key] = true
		if !described[key] {
			t.Errorf("route %s is served but not in openapi.yaml", key)
		}
	}
	for key := range described {
		if !served[key] {
			t.Errorf("openapi.yaml describes %s, which the service does not serve", key)
		}
	}
}

// TestOpenAPIServed checks the document is served as YAML and JSON, with the
// AsyncAPI document beside it.
func TestOpenAPIServed(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	for path, want := range map[string]string{
		"/v1/openapi.json":  `"openapi":"3.1.0"`,
		"/v1/openapi.yaml":  "openapi: 3.1.0",
		"/v1/asyncapi.yaml": "asyncapi: 3.0.0",
	} {
		res := h.do(http.MethodGet, path, nil, nil)
		if res.status != http.StatusOK || !bytes.Contains(res.body, []byte(want)) {
			t.Errorf("GET %s = %d, want 200 with %q; got %.200s", path, res.status, want, res.body)
		}
	}
}
