package bootstrap_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chromium finds a headless-capable Chromium. Without one the test is
// skipped on a developer's machine and fails in CI (CI set), where .ci/run
// installs Debian's chromium.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed and CI is set: .ci/run must install it (apt-get install chromium)")
	}
	t.Skip("chromium is not installed (apt-get install chromium); the /docs browser test needs it")
	return ""
}

// browse runs headless Chromium on url with extra arguments and returns its
// standard output. Its profile lives in a temporary directory; it may reach
// nothing but the test's loopback server.
func browse(t *testing.T, bin, url string, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(),
		"--virtual-time-budget=20000", "--window-size=1280,1800",
	}, extra...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", extra, err, errOut.String())
	}
	return out.Bytes()
}

// TestDocsPageInBrowser loads /docs from the running service in a real
// browser: the Swagger UI shipped in the binary must render the OpenAPI
// document, with the create operation on the page. The screenshot is kept
// (DOCS_SCREENSHOT names where; a temporary file otherwise) and its path
// logged.
func TestDocsPageInBrowser(t *testing.T) {
	bin := chromium(t)
	h := startService(t, t.TempDir(), nil)
	url := h.srv.URL + "/docs"

	dom := string(browse(t, bin, url, "--dump-dom"))
	for _, want := range []string{
		`id="operations-connections-createConnection"`, // the create operation's block
		"Create a connection",
		"/v1/management/connections",
		"connreg — the connection registry",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered /docs page lacks %q (%d bytes of DOM)", want, len(dom))
		}
	}

	for _, bad := range []string{"errors-wrapper", "Failed to load API definition", "jsonSchemaDialect"} {
		if strings.Contains(dom, bad) {
			t.Errorf("the /docs page shows a problem with the document: %q", bad)
		}
	}

	shot := os.Getenv("DOCS_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "docs.png")
	}
	browse(t, bin, url, "--screenshot="+shot)
	png, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) || len(png) < 10_000 {
		t.Fatalf("screenshot %s: %d bytes, err %v", shot, len(png), err)
	}
	t.Logf("screenshot of /docs: %s (%d bytes)", shot, len(png))
}
