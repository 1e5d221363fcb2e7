package httpapi

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/trace"
	"gopkg.in/yaml.v3"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/buildinfo"
)

// OpenAPIYAML is the OpenAPI 3.1 document of this API, served at
// /v1/openapi.yaml and, as JSON, at /v1/openapi.json. The component tests
// validate every exchange against it, so it cannot drift from the code.
//
//go:embed openapi.yaml
var OpenAPIYAML []byte

//go:embed docs/index.html docs/init.js docs/swagger-ui-bundle.js docs/swagger-ui.css docs/LICENSE docs/NOTICE docs/swagger-ui-bundle.js.LICENSE.txt
var docsFS embed.FS

// openAPIJSON converts the embedded document once.
func openAPIJSON() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(OpenAPIYAML, &doc); err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}

// opsRoutes mounts what operators and API users read about the service:
// readiness, version, metrics, the API and event descriptions and the docs
// page (Swagger UI, shipped inside the binary).
func (a *API) opsRoutes(r *gin.Engine) {
	if a.Ready != nil {
		r.GET("/readyz", gin.WrapH(a.Ready))
	}
	if a.Metrics != nil {
		r.GET("/metrics", gin.WrapH(a.Metrics))
	}
	r.GET("/version", func(c *gin.Context) { c.JSON(http.StatusOK, buildinfo.Read()) })
	spec, err := openAPIJSON()
	if err != nil {
		panic("httpapi: the embedded openapi.yaml is not YAML: " + err.Error()) // caught by every test
	}
	r.GET("/v1/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", spec) })
	r.GET("/v1/openapi.yaml", func(c *gin.Context) { c.Data(http.StatusOK, "application/yaml", OpenAPIYAML) })
	asyncAPI := events.AsyncAPI()
	r.GET("/v1/asyncapi.yaml", func(c *gin.Context) { c.Data(http.StatusOK, "application/yaml", asyncAPI) })
	assets, _ := fs.Sub(docsFS, "docs")
	files := http.StripPrefix("/docs/", http.FileServerFS(assets))
	page, _ := docsFS.ReadFile("docs/index.html")
	r.GET("/docs", func(c *gin.Context) { c.Data(http.StatusOK, "text/html; charset=utf-8", page) })
	r.GET("/docs/*asset", func(c *gin.Context) {
		a := c.Param("asset")
		if a == "/" || a == "/index.html" {
			c.Header("Location", "/docs") // one address for the page; no HTML body
			c.AbortWithStatus(http.StatusMovedPermanently)
			return
		}
		// Only existing files reach the file server: its own 404 and
		// directory pages are plain text or HTML, not our error shape.
		if st, err := fs.Stat(assets, strings.TrimPrefix(a, "/")); err != nil || st.IsDir() {
			c.AbortWithStatusJSON(http.StatusNotFound, ErrorBody{Code: CodeNotFound, Title: "Not found", Message: "No such route."})
			return
		}
		c.Header("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(c.Writer, c.Request)
	})
}

// traceIDs are the trace and span ids of a request's context, for its log
// lines (empty when the request is not traced).
func traceIDs(c *gin.Context) []any {
	sc := trace.SpanContextFromContext(c.Request.Context())
	if !sc.IsValid() {
		return nil
	}
	return []any{"trace_id", sc.TraceID().String(), "span_id", sc.SpanID().String()}
}
