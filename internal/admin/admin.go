// Package admin serves Sluice's HTTP admin interface: health, metrics and
// the JSON API.
package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-proxy/sluice/monitor"
)

// Health reports whether Sluice can serve clients, and why not.
type Health func() (ok bool, reason string)

// API is what the admin interface serves from.
type API struct {
	Health   Health
	Gatherer prometheus.Gatherer
	Monitor  *monitor.Monitor
}

// Handler builds the admin HTTP handler.
func Handler(api API) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		ok, reason := api.Health()
		status := http.StatusOK
		if !ok {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, map[string]any{"ok": ok, "reason": reason})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(api.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/servers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.Monitor.Snapshot().Servers)
	})
	// POST /v1/switchover?to=NAME (or {"to": "NAME"}) moves the primary role.
	mux.HandleFunc("POST /v1/switchover", func(w http.ResponseWriter, r *http.Request) {
		to := r.URL.Query().Get("to")
		if to == "" {
			var body struct {
				To string `json:"to"`
			}
			_ = json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&body)
			to = body.To
		}
		if to == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "name the new primary: POST /v1/switchover?to=NAME"})
			return
		}
		if err := api.Monitor.Switchover(r.Context(), to); err != nil {
			writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"primary": to})
	})
	// Profiles, for `go tool pprof http://ADMIN/debug/pprof/profile`. The
	// admin listener is loopback unless configured otherwise.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
