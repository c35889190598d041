package app

import (
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-proxy/sluice/internal/config"
)

// fullConfig sets every key of the sections that packages own.
const fullConfig = `name: y
listen: 127.0.0.1:4006
admin_token: tok
listen_reuseport: true
max_connections: 7
max_user_connections: 3
user_max_connections: {bob: 2}
client_idle_timeout: 1m
backend_read_timeout: 2s
servers: [{name: a, address: '127.0.0.1:1', weight: 3}]
service_user: {user: m, password: secret}
accounts: [{user: app, host: '10.%', password: pw}]
users_refresh_interval: 5s
auth: {plugins: [caching_sha2_password, mysql_native_password], password_cache_ttl: 2h}
server_version: 8.0.0-x
max_allowed_packet: 2048
connect_timeout: 3s
drain_timeout: 4s
router:
  type: readconnroute
  max_replication_lag: 3s
  target: any
  balance: round_robin
  classifier_cache_size: 55
  causal_reads: true
  causal_reads_timeout: 7s
  max_replica_connections: 2
  primary_reads: true
  transaction_replay: true
  transaction_replay_max_size: 4096
  transaction_replay_retry_on_deadlock: true
  transaction_replay_attempts: 9
  primary_wait: 6s
monitor:
  interval: 500ms
  timeout: 1s
  type: galera
  preferred_writer: a
  heartbeat: true
  heartbeat_table: db.hb
  lag_hysteresis: 0.5
  auto_failover: true
  failover_timeout: 20s
  auto_rejoin: true
  replication_user: {user: repl, password: rp}
broker:
  sasl: {users: [{name: auditor, password: brokersecret}]}
`

// GET /v1/config shows every key a config file sets, under the same path,
// with its secrets hidden.
func TestConfigViewShowsEveryKey(t *testing.T) {
	full := filepath.Join(t.TempDir(), "full.yaml")
	if err := os.WriteFile(full, []byte(fullConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"../../configs/sluice.yaml", full} {
		cfg, err := config.Load(file)
		if err != nil {
			t.Fatal(err)
		}
		view := configView(cfg.Redacted())
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var in map[string]any
		if err := yaml.Unmarshal(data, &in); err != nil {
			t.Fatal(err)
		}
		checkKeys(t, file, "", in, view)
	}
	cfg, err := config.Load(full)
	if err != nil {
		t.Fatal(err)
	}
	view := configView(cfg.Redacted()).(map[string]any)
	for _, v := range []any{view["admin_token"], view["service_user"].(map[string]any)["password"],
		view["accounts"].([]any)[0].(map[string]any)["password"],
		view["monitor"].(map[string]any)["replication_user"].(map[string]any)["password"],
		view["broker"].(map[string]any)["sasl"].(map[string]any)["users"].([]any)[0].(map[string]any)["password"]} {
		if v != "********" {
			t.Errorf("a secret shows as %v", v)
		}
	}
	if got := view["router"].(map[string]any)["transaction_replay_attempts"]; got != 9 {
		t.Errorf("router.transaction_replay_attempts shows as %v, want 9", got)
	}
}

func checkKeys(t *testing.T, file, path string, in, view any) {
	t.Helper()
	switch in := in.(type) {
	case map[string]any:
		v, ok := view.(map[string]any)
		if !ok {
			t.Errorf("%s: %s is %T in the view, want a mapping", file, path, view)
			return
		}
		for k, sub := range in {
			p := k
			if path != "" {
				p = path + "." + k
			}
			got, ok := v[k]
			if !ok {
				t.Errorf("%s: %s is missing from the view", file, p)
				continue
			}
			checkKeys(t, file, p, sub, got)
		}
	case []any:
		v, ok := view.([]any)
		if !ok || len(v) != len(in) {
			t.Errorf("%s: %s is %v in the view", file, path, view)
			return
		}
		for i := range in {
			checkKeys(t, file, path, in[i], v[i])
		}
	}
}
