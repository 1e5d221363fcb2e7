package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestDocsAnswersAreOursOrFiles: the docs page's asset route serves its
// files, and answers a missing file or a directory in our JSON error shape
// (not the file server's plain text or HTML), and its redirects carry no
// HTML body.
func TestDocsAnswersAreOursOrFiles(t *testing.T) {
	h, _ := newRefusingAPI(t)
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	if rec := get("/docs/init.js"); rec.Code != http.StatusOK {
		t.Fatalf("an existing asset: %d", rec.Code)
	}
	for _, path := range []string{"/docs/nope.js", "/docs/missing/", "/docs/..%2f..%2fetc%2fpasswd"} {
		rec := get(path)
		var body ErrorBody
		if rec.Code != http.StatusNotFound || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Code != CodeNotFound {
			t.Errorf("GET %s: %d %q, want 404 in our error shape", path, rec.Code, rec.Body.String())
		}
	}
	for _, path := range []string{"/docs/", "/docs/index.html"} {
		rec := get(path)
		if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "/docs" || rec.Body.Len() != 0 {
			t.Errorf("GET %s: %d Location %q body %q", path, rec.Code, rec.Header().Get("Location"), rec.Body.String())
		}
	}
}
