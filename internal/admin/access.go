package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Action is one admin request that changed something or read what only
// some may read, as the events topic and the log record it: who, from
// where, what, on what, when, and how it went.
type Action struct {
	Type    string    `json:"type"` // "admin"
	TS      time.Time `json:"ts"`
	User    string    `json:"user"`
	Role    Role      `json:"role,omitempty"`
	Address string    `json:"address"`
	Action  string    `json:"action"`
	Target  string    `json:"target,omitempty"`
	// Outcome is "ok", "failed" (the action was tried), "refused" (beyond
	// the user's role) or, for an audit tail, "opened" then "closed".
	Outcome string `json:"outcome"`
	Status  int    `json:"status,omitempty"`
	Error   string `json:"error,omitempty"`
}

// actionOf names what a request does, for the record of admin actions; ""
// for reads that are not recorded (servers, sessions, metrics...).
func actionOf(r *http.Request) (action, target string) {
	p := r.URL.Path
	switch {
	case isMaintenancePath(p):
		name := strings.TrimSuffix(strings.TrimPrefix(p, "/v1/servers/"), "/maintenance")
		if r.Method == "DELETE" || r.URL.Query().Get("off") != "" || r.URL.Query().Get("on") == "false" {
			return "maintenance_off", name
		}
		return "maintenance_on", name
	case p == "/v1/switchover":
		return "switchover", r.URL.Query().Get("to")
	case p == "/v1/reload":
		return "reload", ""
	case p == "/v1/config":
		return "config_read", ""
	case p == "/v1/audit/tail":
		return "audit_tail", r.URL.Query().Get("where")
	case p == "/v1/audit/checkpoint":
		return "audit_checkpoint_read", ""
	case strings.HasPrefix(p, "/debug/pprof/"):
		return "profile", strings.TrimPrefix(p, "/debug/pprof/")
	}
	return "", ""
}

// guard authenticates every request but /health with a bearer token,
// authorizes it by role (roleFor), and records the actions (actionOf).
func guard(creds func() *Credentials, record func(Action), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			next.ServeHTTP(w, r)
			return
		}
		u, ok := creds().user(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			writeError(w, http.StatusUnauthorized, "missing or unknown token: send Authorization: Bearer <token> of one of admin_users (or admin_token)")
			return
		}
		action, target := actionOf(r)
		act := Action{Type: "admin", User: u.name, Role: u.role, Address: r.RemoteAddr, Action: action, Target: target}
		emit := func(outcome string, status int, msg string) {
			if action == "" || record == nil {
				return
			}
			a := act
			a.TS, a.Outcome, a.Status, a.Error = time.Now().UTC(), outcome, status, msg
			record(a)
		}
		r = r.WithContext(context.WithValue(r.Context(), userKey{}, u))
		need, known := roleFor(r.Method, r.URL.Path)
		if known && !u.role.may(need) {
			msg := string(u.role) + " " + u.name + " may not " + r.Method + " " + r.URL.Path + ": it needs the " + string(need) + " role"
			emit("refused", http.StatusForbidden, msg)
			writeError(w, http.StatusForbidden, msg)
			return
		}
		if action == "audit_tail" {
			emit("opened", 0, "")
			defer func() { emit("closed", 0, "") }()
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		switch {
		case sw.status < 300:
			emit("ok", sw.status, "")
		default:
			emit("failed", sw.status, sw.errorText())
		}
	})
}

// statusWriter keeps a response's status, and the start of an error's
// body for the record.
type statusWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status >= 300 && s.body.Len() < 1024 {
		s.body.Write(b[:min(len(b), 1024-s.body.Len())])
	}
	return s.ResponseWriter.Write(b)
}

// Flush lets streaming handlers (pprof's trace) flush through.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) errorText() string {
	var e struct{ Error string }
	if json.Unmarshal(s.body.Bytes(), &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(s.body.String())
}

type userKey struct{}

// requestUser is who guard found a request to come from.
func requestUser(r *http.Request) credential {
	u, _ := r.Context().Value(userKey{}).(credential)
	return u
}
