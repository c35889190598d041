// Package admin serves Sluice's HTTP admin interface: health, metrics, the
// JSON API and the web console.
package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/internal/admin/console"
	"github.com/sluice-proxy/sluice/internal/digest"
	"github.com/sluice-proxy/sluice/monitor"
	"github.com/sluice-proxy/sluice/proxy"
)

// Health reports whether Sluice can serve clients, and why not.
type Health func() (ok bool, reason string)

// API is what the admin interface serves from. Nil funcs answer 404.
type API struct {
	Health   Health
	Gatherer prometheus.Gatherer
	Monitor  *monitor.Monitor
	// Sessions lists the client sessions.
	Sessions func() []proxy.SessionInfo
	// Digests is the statement digest table (nil: disabled).
	Digests func() *digest.Table
	// Config is the running config, secrets redacted, as plain data.
	Config func() any
	// Reload re-reads the config file, as SIGHUP does.
	Reload func() error
	// Stats are the proxy's running totals.
	Stats func() proxy.Stats
	// Pool lists the pooled server connections by server and user (nil:
	// none to show).
	Pool func() []proxy.PoolStats
	// AuditTail streams the audit records matching where from since ago
	// until ctx ends; nil when Genlog is off.
	AuditTail func(ctx context.Context, where *audit.Where, since time.Duration, emit func([]byte)) error
	// AuditCheckpoints are the latest signed checkpoints of the audit
	// trail, one per partition written to; nil without genlog.signing_key.
	AuditCheckpoints func() any
	// Credentials are the admin users now (admin_users, admin_token; a
	// reload may change them): each request but GET /health and the
	// console's static page (GET / and GET /console/NAME) must bring one's
	// token as "Authorization: Bearer TOKEN", and is allowed what its role
	// allows. Nil: no users, every caller is admin.
	Credentials func() *Credentials
	// Record, when set, receives each admin action (maintenance,
	// switchover, reload, config read, audit tail opened and closed,
	// profiles, and requests refused for their role).
	Record func(Action)
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
	mux.HandleFunc("GET /v1/whoami", func(w http.ResponseWriter, r *http.Request) {
		u := requestUser(r)
		writeJSON(w, http.StatusOK, map[string]string{"user": u.name, "role": string(u.role)})
	})
	mux.HandleFunc("GET /v1/servers", func(w http.ResponseWriter, r *http.Request) {
		var pool []proxy.PoolStats
		if api.Pool != nil {
			pool = api.Pool()
		}
		writeJSON(w, http.StatusOK, serverViews(api.Monitor.Snapshot(), pool))
	})
	mux.HandleFunc("POST /v1/servers/{name}/maintenance", func(w http.ResponseWriter, r *http.Request) {
		on := r.URL.Query().Get("off") == "" && r.URL.Query().Get("on") != "false"
		if err := api.Monitor.SetMaintenance(r.Context(), r.PathValue("name"), on); err != nil {
			writeError(w, http.StatusConflict, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"server": r.PathValue("name"), "maintenance": on})
	})
	mux.HandleFunc("DELETE /v1/servers/{name}/maintenance", func(w http.ResponseWriter, r *http.Request) {
		if err := api.Monitor.SetMaintenance(r.Context(), r.PathValue("name"), false); err != nil {
			writeError(w, http.StatusConflict, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"server": r.PathValue("name"), "maintenance": false})
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
			writeError(w, http.StatusBadRequest, "name the new primary: POST /v1/switchover?to=NAME")
			return
		}
		if err := api.Monitor.Switchover(r.Context(), to); err != nil {
			writeError(w, http.StatusConflict, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"primary": to})
	})
	mux.HandleFunc("GET /v1/sessions", func(w http.ResponseWriter, r *http.Request) {
		if api.Sessions == nil {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, http.StatusOK, api.Sessions())
	})
	// GET /v1/digests?limit=20&sort=total|count|max|p99|errors
	mux.HandleFunc("GET /v1/digests", func(w http.ResponseWriter, r *http.Request) {
		var d *digest.Table
		if api.Digests != nil {
			d = api.Digests()
		}
		limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
		if err != nil || limit <= 0 {
			limit = 20
		}
		writeJSON(w, http.StatusOK, d.Top(limit, r.URL.Query().Get("sort")))
	})
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) {
		if api.Stats == nil {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"at": time.Now(), "proxy": api.Stats()})
	})
	// GET /v1/audit/tail?where=EXPR&since=1m streams matching audit records
	// as server-sent events, one JSON record per event. EXPR is the audit
	// tail's --where expression; one that does not compile answers 400.
	mux.HandleFunc("GET /v1/audit/tail", func(w http.ResponseWriter, r *http.Request) {
		if api.AuditTail == nil {
			writeError(w, http.StatusNotFound, "genlog is disabled: there is no audit trail to tail")
			return
		}
		since := time.Minute
		if v := r.URL.Query().Get("since"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				writeError(w, http.StatusBadRequest, "since: a duration such as 30s or 5m")
				return
			}
			since = d
		}
		where, err := audit.ParseWhere(r.URL.Query().Get("where"))
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		flusher, ok := w.(http.Flusher)
		if !ok {
			writeError(w, http.StatusInternalServerError, "streaming unsupported")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		flusher.Flush()
		var mu sync.Mutex
		err = api.AuditTail(r.Context(), where, since, func(rec []byte) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(w, "data: %s\n\n", rec)
			flusher.Flush()
		})
		if err != nil && r.Context().Err() == nil {
			mu.Lock()
			fmt.Fprintf(w, "event: error\ndata: %s\n\n", strings.ReplaceAll(err.Error(), "\n", " "))
			flusher.Flush()
			mu.Unlock()
		}
	})
	// GET /v1/audit/checkpoint is the latest signed checkpoints: an anchor
	// for `sluice audit verify --checkpoint FILE`, to keep off this machine.
	mux.HandleFunc("GET /v1/audit/checkpoint", func(w http.ResponseWriter, r *http.Request) {
		if api.AuditCheckpoints == nil {
			writeError(w, http.StatusNotFound, "no signed checkpoints: set genlog.signing_key")
			return
		}
		writeJSON(w, http.StatusOK, api.AuditCheckpoints())
	})
	mux.HandleFunc("GET /v1/config", func(w http.ResponseWriter, r *http.Request) {
		if api.Config == nil {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, http.StatusOK, api.Config())
	})
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		if api.Reload == nil {
			http.NotFound(w, r)
			return
		}
		if err := api.Reload(); err != nil {
			writeError(w, http.StatusUnprocessableEntity, "config refused; the running one is kept: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"reloaded": true})
	})
	// Profiles, for `go tool pprof http://ADMIN/debug/pprof/profile`.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	// The web console: a static page and its assets, open like /health
	// (they hold no data); the page sends the token on its API calls.
	root := http.NewServeMux()
	root.Handle("GET /{$}", console.Handler())
	root.Handle("GET /console/", console.Handler())
	creds := api.Credentials
	if creds == nil {
		creds = func() *Credentials { return nil }
	}
	// /health stays open: cluster managers probe it without credentials.
	root.Handle("/", guard(creds, api.Record, mux))
	return root
}

// ServerView is a server as GET /v1/servers shows it.
type ServerView struct {
	Name          string  `json:"name"`
	Address       string  `json:"address"`
	State         string  `json:"state"`
	Role          string  `json:"role"`
	Up            bool    `json:"up"`
	ReadOnly      bool    `json:"read_only"`
	LagSeconds    float64 `json:"lag_seconds"`
	GTIDPosition  string  `json:"gtid_position"`
	SemiSync      bool    `json:"semi_sync"`
	SourceAddress string  `json:"source_address,omitempty"`
	Maintenance   bool    `json:"maintenance"`
	Version       string  `json:"version"`
	LastError     string  `json:"last_error,omitempty"`
	Weight        int     `json:"weight"`
	// PrivilegeGaps: which enabled feature lacks which privilege of
	// service_user on this server, with the GRANT that fixes it.
	PrivilegeGaps []string `json:"privilege_gaps,omitempty"`
	// Pool are Sluice's pooled connections to the server, by user
	// (pool.mode multiplex or idle).
	Pool []proxy.PoolUse `json:"pool,omitempty"`
}

func serverViews(snap *monitor.Snapshot, pool []proxy.PoolStats) []ServerView {
	byServer := map[string][]proxy.PoolUse{}
	for _, p := range pool {
		byServer[p.Server] = append(byServer[p.Server], p.PoolUse)
	}
	out := make([]ServerView, 0, len(snap.Servers))
	for _, s := range snap.Servers {
		views := byServer[s.Name]
		sort.Slice(views, func(i, j int) bool { return views[i].User < views[j].User })
		lag := -1.0
		if s.ReplicaLag >= 0 {
			lag = s.ReplicaLag.Seconds()
		}
		out = append(out, ServerView{Name: s.Name, Address: s.Address, State: s.State(), Role: string(s.Role), Up: s.Up,
			ReadOnly: s.ReadOnly, LagSeconds: lag, GTIDPosition: s.GTIDPosition, SemiSync: s.SemiSync, SourceAddress: s.SourceAddress,
			Maintenance: s.Maintenance, Version: s.Version, LastError: s.LastError, Weight: s.Weight, PrivilegeGaps: s.PrivilegeGaps,
			Pool: views})
	}
	return out
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": strings.TrimSpace(msg)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
