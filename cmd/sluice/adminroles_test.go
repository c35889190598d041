package main_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAdminRoles runs a Sluice with a user of each role (one token from a
// file) and calls every endpoint as each of them and as nobody: a request
// without a valid token gets 401, one beyond its role 403 (both JSON), one
// within it is served. Each admin action (refused ones too) then appears
// once in the events topic with the user's name, and no token appears in
// /v1/config.
func TestAdminRoles(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "ops.token")
	if err := os.WriteFile(tokenFile, []byte("tok-operator-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in := startInstance(t, fmt.Sprintf(`genlog:
  enabled: true
admin_users:
  - {name: vera, token: tok-viewer, role: viewer}
  - {name: aud, token: tok-auditor, role: auditor}
  - {name: otto, token_file: %s, role: operator}
  - {name: ada, token: tok-admin, role: admin}
`, tokenFile))
	tokens := map[string]string{"viewer": "tok-viewer", "auditor": "tok-auditor", "operator": "tok-operator-from-file", "admin": "tok-admin"}
	users := map[string]string{"viewer": "vera", "auditor": "aud", "operator": "otto", "admin": "ada"}
	rank := map[string]int{"viewer": 1, "auditor": 2, "operator": 3, "admin": 4}
	type call struct {
		method, path, need string
		action             string // recorded as, "" when not recorded
	}
	calls := []call{
		{"GET", "/metrics", "viewer", ""},
		{"GET", "/v1/servers", "viewer", ""},
		{"GET", "/v1/sessions", "viewer", ""},
		{"GET", "/v1/digests", "viewer", ""},
		{"GET", "/v1/stats", "viewer", ""},
		{"GET", "/v1/whoami", "viewer", ""},
		{"GET", "/v1/audit/tail?since=1s", "auditor", "audit_tail"},
		{"GET", "/v1/audit/checkpoint", "auditor", "audit_checkpoint_read"},
		{"POST", "/v1/servers/replica2/maintenance", "operator", "maintenance_on"},
		{"DELETE", "/v1/servers/replica2/maintenance", "operator", "maintenance_off"},
		{"POST", "/v1/switchover", "operator", "switchover"}, // no target: 400, harmless
		{"POST", "/v1/reload", "operator", "reload"},
		{"GET", "/v1/config", "admin", "config_read"},
		{"GET", "/debug/pprof/cmdline", "admin", "profile"},
	}
	do := func(c call, token string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, c.method, "http://"+in.admin+c.path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK && strings.HasPrefix(c.path, "/v1/audit/tail") {
			return resp.StatusCode, "" // a followed tail streams until its request ends
		}
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		return resp.StatusCode, string(buf[:n])
	}
	want := map[string]int{} // "user action outcome" -> records expected
	for _, c := range calls {
		if code, body := do(c, ""); code != http.StatusUnauthorized || !strings.Contains(body, `"error"`) {
			t.Errorf("%s %s without a token: %d %s; want 401 with a JSON error", c.method, c.path, code, body)
		}
		if code, _ := do(c, "tok-nobody"); code != http.StatusUnauthorized {
			t.Errorf("%s %s with an unknown token: %d; want 401", c.method, c.path, code)
		}
		for role, tok := range tokens {
			code, body := do(c, tok)
			allowed := rank[role] >= rank[c.need]
			switch {
			case allowed && (code == http.StatusUnauthorized || code == http.StatusForbidden):
				t.Errorf("%s %s as %s: %d %s; the role allows it", c.method, c.path, role, code, body)
			case !allowed && (code != http.StatusForbidden || !strings.Contains(body, "needs the "+c.need+" role")):
				t.Errorf("%s %s as %s: %d %s; want 403 naming the %s role", c.method, c.path, role, code, body, c.need)
			}
			if c.action == "" {
				continue
			}
			switch {
			case !allowed:
				want[users[role]+" "+c.action+" refused"]++
			case c.action == "audit_tail":
				want[users[role]+" audit_tail opened"]++
				want[users[role]+" audit_tail closed"]++
			case code < 300:
				want[users[role]+" "+c.action+" ok"]++
			default:
				want[users[role]+" "+c.action+" failed"]++
			}
		}
	}
	if code, body := do(call{"GET", "/v1/whoami", "", ""}, "tok-operator-from-file"); code != 200 || !strings.Contains(body, `"user": "otto"`) || !strings.Contains(body, `"role": "operator"`) {
		t.Errorf("whoami as otto: %d %s", code, body)
	}
	_, cfgBody := do(call{"GET", "/v1/config", "", ""}, "tok-admin")
	for _, tok := range tokens {
		if strings.Contains(cfgBody, tok) {
			t.Fatalf("/v1/config shows a token: %s", cfgBody)
		}
	}
	want["ada config_read ok"]++

	total := 0
	for _, n := range want {
		total += n
	}
	recs := readTopic(t, in.broker, "sluice.events", func(rs []record) bool {
		n := 0
		for _, r := range rs {
			if r.Type == "admin" {
				n++
			}
		}
		return n >= total
	})
	got := map[string]int{}
	for _, r := range recs {
		if r.Type == "admin" {
			got[r.User+" "+r.Action+" "+r.Outcome]++
		}
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("events topic: %d records %q, want %d", got[k], k, n)
		}
	}
	for k, n := range got {
		if want[k] == 0 {
			t.Errorf("events topic: %d unexpected records %q", n, k)
		}
	}
}
