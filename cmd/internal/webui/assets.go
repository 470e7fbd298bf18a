package webui

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed assets
var assets embed.FS

// contentSecurity lets a page load only its own embedded scripts, styles
// and images, talk only to its own origin, and never be framed.
const contentSecurity = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

func pageHeaders(w http.ResponseWriter, contentType string) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Security-Policy", contentSecurity)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// EdgePage serves the edge dashboard (GET /).
func EdgePage(w http.ResponseWriter, _ *http.Request) { servePage(w, "assets/edge.html") }

// HubPage serves the hub dashboard (GET /ui/).
func HubPage(w http.ResponseWriter, _ *http.Request) { servePage(w, "assets/hub.html") }

func servePage(w http.ResponseWriter, name string) {
	b, err := assets.ReadFile(name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	pageHeaders(w, "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

var types = map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
	".svg": "image/svg+xml", ".html": "text/html; charset=utf-8"}

// Asset serves the embedded file named by the last element of the
// request path (GET …/assets/{file}); 404 for anything else.
func Asset(w http.ResponseWriter, r *http.Request) {
	name := path.Base(r.URL.Path)
	ct, ok := types[path.Ext(name)]
	b, err := fs.ReadFile(assets, "assets/"+name)
	if !ok || err != nil || strings.HasSuffix(name, ".html") {
		http.NotFound(w, r)
		return
	}
	pageHeaders(w, ct)
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}
