// Package console is Sluice's web console: one page, embedded in the binary,
// that reads the admin JSON API from the browser. The page and its assets
// hold no data and are served without the admin token; the page sends the
// token (from a #token=... fragment or a form, kept in sessionStorage) on
// its API calls.
package console

import (
	"embed"
	"net/http"
	"path"
	"strings"
)

//go:embed index.html app.js style.css
var files embed.FS

var types = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// Handler serves the page at / and its assets at /console/NAME.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := "index.html"
		if r.URL.Path != "/" {
			name = strings.TrimPrefix(r.URL.Path, "/console/")
		}
		body, err := files.ReadFile(name)
		if strings.Contains(name, "/") || err != nil {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", types[path.Ext(name)])
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		// Everything comes from Sluice itself: no CDN, no inline script.
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		w.Write(body)
	})
}
