package admin

import "strings"

// Role is what an admin user may do. Each includes the ones before it:
// viewer, auditor, operator, admin.
type Role string

const (
	// RoleViewer reads the state: servers, sessions, digests, stats and
	// metrics.
	RoleViewer Role = "viewer"
	// RoleAuditor also reads the audit trail (the tail shows query text)
	// and its signed checkpoints.
	RoleAuditor Role = "auditor"
	// RoleOperator also changes the topology and the running config:
	// maintenance, switchover, reload.
	RoleOperator Role = "operator"
	// RoleAdmin may do everything, reading the config and profiling
	// included.
	RoleAdmin Role = "admin"
)

var roleRank = map[Role]int{RoleViewer: 1, RoleAuditor: 2, RoleOperator: 3, RoleAdmin: 4}

func (r Role) valid() bool { return roleRank[r] > 0 }

// may reports whether role r includes need.
func (r Role) may(need Role) bool { return roleRank[r] >= roleRank[need] }

// roleFor is the role a request needs, by method and path: the admin
// API's authorization as one table. ok is false for paths the API does
// not have (they answer 404 to anyone with a valid token).
func roleFor(method, path string) (need Role, ok bool) {
	switch {
	case method == "GET" && (path == "/metrics" || path == "/v1/servers" || path == "/v1/sessions" ||
		path == "/v1/digests" || path == "/v1/stats" || path == "/v1/whoami"):
		return RoleViewer, true
	case method == "GET" && (path == "/v1/audit/tail" || path == "/v1/audit/checkpoint"):
		return RoleAuditor, true
	case (method == "POST" || method == "DELETE") && isMaintenancePath(path),
		method == "POST" && (path == "/v1/switchover" || path == "/v1/reload"):
		return RoleOperator, true
	case method == "GET" && (path == "/v1/config" || strings.HasPrefix(path, "/debug/pprof/")):
		return RoleAdmin, true
	}
	return "", false
}

// isMaintenancePath matches /v1/servers/{name}/maintenance.
func isMaintenancePath(p string) bool {
	name, ok := strings.CutPrefix(p, "/v1/servers/")
	name, ok2 := strings.CutSuffix(name, "/maintenance")
	return ok && ok2 && name != "" && !strings.Contains(name, "/")
}
