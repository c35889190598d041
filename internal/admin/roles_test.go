package admin

import "testing"

// The admin API's authorization, as a table: the role each request needs.
func TestRoleFor(t *testing.T) {
	for _, c := range []struct {
		method, path string
		need         Role
		known        bool
	}{
		{"GET", "/metrics", RoleViewer, true},
		{"GET", "/v1/servers", RoleViewer, true},
		{"GET", "/v1/sessions", RoleViewer, true},
		{"GET", "/v1/digests", RoleViewer, true},
		{"GET", "/v1/stats", RoleViewer, true},
		{"GET", "/v1/whoami", RoleViewer, true},
		{"GET", "/v1/audit/tail", RoleAuditor, true},
		{"GET", "/v1/audit/checkpoint", RoleAuditor, true},
		{"POST", "/v1/servers/replica1/maintenance", RoleOperator, true},
		{"DELETE", "/v1/servers/replica1/maintenance", RoleOperator, true},
		{"POST", "/v1/switchover", RoleOperator, true},
		{"POST", "/v1/reload", RoleOperator, true},
		{"GET", "/v1/config", RoleAdmin, true},
		{"GET", "/debug/pprof/profile", RoleAdmin, true},
		{"GET", "/debug/pprof/", RoleAdmin, true},
		// Not the API's: 404 for anyone with a valid token.
		{"POST", "/v1/servers/a/b/maintenance", "", false},
		{"POST", "/v1/servers//maintenance", "", false},
		{"GET", "/v1/switchover", "", false},
		{"PUT", "/v1/config", "", false},
		{"GET", "/v1/nothing", "", false},
	} {
		need, known := roleFor(c.method, c.path)
		if need != c.need || known != c.known {
			t.Errorf("%s %s: needs %q (known %v), want %q (%v)", c.method, c.path, need, known, c.need, c.known)
		}
	}
	for _, c := range []struct {
		role, need Role
		may        bool
	}{
		{RoleViewer, RoleViewer, true}, {RoleViewer, RoleAuditor, false},
		{RoleAuditor, RoleViewer, true}, {RoleAuditor, RoleAuditor, true}, {RoleAuditor, RoleOperator, false},
		{RoleOperator, RoleAuditor, true}, {RoleOperator, RoleOperator, true}, {RoleOperator, RoleAdmin, false},
		{RoleAdmin, RoleAdmin, true}, {"", RoleViewer, false}, {"root", RoleViewer, false},
	} {
		if got := c.role.may(c.need); got != c.may {
			t.Errorf("%q may %q: %v, want %v", c.role, c.need, got, c.may)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Listen: "0.0.0.0:8989"}, "admin_listen: 0.0.0.0:8989 is reachable beyond this machine"},
		{Config{Listen: "10.0.0.5:8989", AllowAnonymous: true}, ""},
		{Config{Listen: "10.0.0.5:8989", Token: "t"}, ""},
		{Config{Listen: "127.0.0.1:8989"}, ""},
		{Config{Listen: "[::1]:8989"}, ""},
		{Config{Listen: "127.0.0.1:8989", Users: []User{{Name: "a", Token: "x", Role: "root"}}}, "admin_users[0].role: \"root\" is not a role"},
		{Config{Listen: "127.0.0.1:8989", Users: []User{{Name: "a", Role: RoleViewer}}}, "admin_users[0]: give token or token_file"},
		{Config{Listen: "127.0.0.1:8989", Users: []User{{Name: "a", Token: "x", Role: RoleViewer}, {Name: "a", Token: "y", Role: RoleAdmin}}}, "admin_users[1].name: \"a\" is named twice"},
		{Config{Listen: "127.0.0.1:8989", TLS: TLS{Cert: "c.pem"}}, "admin_tls: give both cert and key"},
	} {
		err := c.cfg.Validate()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if c.want == "" && got != "" || c.want != "" && (len(got) < len(c.want) || got[:len(c.want)] != c.want) {
			t.Errorf("%+v: %q, want %q", c.cfg, got, c.want)
		}
	}
}
