package config

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := Load("../../configs/sluice.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Proxy.Listen != "127.0.0.1:4006" || len(cfg.Servers) != 2 || cfg.Router.MaxReplicationLag != 10*time.Second ||
		cfg.Broker.Partitions != 4 || cfg.Broker.Retention != 168*time.Hour || !cfg.Genlog.Enabled {
		t.Fatalf("example config decoded wrong: %+v", cfg)
	}
}

func TestErrorsNameFileKeyAndLine(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"listen: 127.0.0.1:4006\nservers:\n  - name: a\n    address: nope\nservice_user: {user: m}\n",
			"x.yaml:4: servers[0].address: \"nope\" is not host:port"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\nrouter:\n  type: roundabout\n",
			"x.yaml:5: router.type: unknown router \"roundabout\""},
		{"listen: 127.0.0.1:4006\nlisten_typo: 1\n", "x.yaml:2: listen_typo: unknown key; see configs/sluice.yaml"},
		// Type errors and unknown keys name the full key path and the form expected.
		{"listen: 127.0.0.1:4006\nconnect_timeout: 5\n", "x.yaml:2: connect_timeout: \"5\" is not a duration; expected a number with a unit, such as 500ms, 5s or 1m"},
		{"listen: 127.0.0.1:4006\nservice_user:\n  user: m\n  pasword: x\n", "x.yaml:4: service_user.pasword: unknown key"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1', wieght: 2}]\n", "x.yaml:2: servers[0].wieght: unknown key"},
		{"listen: 127.0.0.1:4006\nservers:\n  - name: a\n    weight: x\n", "x.yaml:4: servers[0].weight: \"x\" is not a whole number"},
		{"listen: 127.0.0.1:4006\nrouter:\n  causal_reads: maybe\n", "x.yaml:3: router.causal_reads: \"maybe\" is not true or false"},
		{"listen: 127.0.0.1:4006\ngenlog:\n  redact_columns: a.b\n", "x.yaml:3: genlog.redact_columns: expected a list"},
		{"listen: 127.0.0.1:4006\nmax_connections: [1]\n", "x.yaml:2: max_connections: a list is not a whole number"},
		{"listen: 127.0.0.1:4006\nmonitor:\n  interval: soon\n", "x.yaml:3: monitor.interval: \"soon\" is not a duration"},
		{"servers: []\n", "x.yaml: listen: missing"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\nbroker:\n  enabled: true\n  partitions: -3\n",
			"x.yaml:6: broker.partitions: must be >= 1"},
		{"", "x.yaml: config is empty"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\nproxy_protocol_networks:\n  - 10.0.0.0/24\n  - haproxy.local\n",
			"x.yaml:6: proxy_protocol_networks[1]: \"haproxy.local\" is neither a CIDR (10.0.0.0/24) nor an address (10.0.0.7); list the balancers"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\nsched_slice: 10us\n",
			"x.yaml:4: sched_slice: 10µs is outside the kernel's range: use 100µs to 100ms, or 0s for the kernel's default"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\nrouter:\n  primary_wait: -1s\n",
			"x.yaml:5: router.primary_wait: -1s is out of range; use 0s (fail at once) up to 5m, e.g. 10s"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\nrouter:\n  max_replica_connections: -1\n",
			"x.yaml:5: router.max_replica_connections: must be >= 0 (0: one per replica)"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\nrouter:\n  transaction_replay_max_size: -5\n",
			"x.yaml:5: router.transaction_replay_max_size: -5 is out of range; use 1 to 67108864 bytes, e.g. 1048576"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\nrouter:\n  transaction_replay_attempts: 1000\n",
			"x.yaml:5: router.transaction_replay_attempts: 1000 is out of range; use 1 to 100, e.g. 5"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\nrouter:\n  transaction_replay_retry_on_deadlock: true\n",
			"x.yaml:5: router.transaction_replay_retry_on_deadlock: needs the transaction's statements, which only router.transaction_replay keeps; set transaction_replay: true too"},
		// Keys of the sections that packages own keep their full path.
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\nmonitor:\n  heartbeat: true\n  heartbeat_table: nodot\n",
			"x.yaml:6: monitor.heartbeat_table: \"nodot\" is not database.table"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\nmonitor:\n  interval: 1ms\n",
			"x.yaml:5: monitor.interval: 1ms is too short; use 10ms or more"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\nrouter:\n  type: readconnroute\n  target: nowhere\n",
			"x.yaml:6: router.target: unknown target \"nowhere\""},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\nuser_max_connections:\n  bob: -1\n",
			"x.yaml:5: user_max_connections.bob: must be >= 0"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\naccounts:\n  - user: a\n  - host: '%'\n",
			"x.yaml:6: accounts[1].user: missing"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\ngenlog:\n  enabled: true\n  on_full: sometimes\n",
			"x.yaml:6: genlog.on_full: unknown \"sometimes\"; use spill, block or drop"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\ngenlog:\n  sample: 2\n",
			"x.yaml:5: genlog.sample: 2 is not a fraction from 0 to 1"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\ngenlog:\n  redact_patterns:\n    - email\n    - ssn\n",
			"x.yaml:7: genlog.redact_patterns[1]: unknown pattern \"ssn\"; use card_number or email"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\ngenlog:\n  redact_columns: [pan]\n",
			"x.yaml:5: genlog.redact_columns[0]: \"pan\" is not table.column or db.table.column"},
		{"listen: nope\n", "x.yaml:1: listen: \"nope\" is not host:port"},
		{"listen: 127.0.0.1:4006\nadmin_listen: 127.0.0.1:99999\n", "x.yaml:2: admin_listen: port \"99999\""},
		// Unknown keys are refused in inlined sections too.
		{"listen: 127.0.0.1:4006\nrouter:\n  type: readwritesplit\n  transaction_replay_typo: true\n", "x.yaml:4: router.transaction_replay_typo: unknown key"},
		{"listen: 127.0.0.1:4006\nmonitor:\n  auto_failover: true\n  failover_typo: 1s\n", "x.yaml:4: monitor.failover_typo: unknown key"},
		{"listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\nfilters:\n  - type: regex\n    match: x\n  - type: regex\n    match: '(bad'\n",
			"x.yaml:8: filters[1].match: not an RE2 pattern"},
	}
	for _, c := range cases {
		_, err := Parse("x.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %q: error %v, want it to contain %q", c.yaml, err, c.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.yaml")
	os.WriteFile(path, []byte("listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\n"), 0o600)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Router.Type != "readwritesplit" || cfg.Monitor.Interval != time.Second || cfg.Proxy.UsersRefreshInterval != 30*time.Second ||
		cfg.Servers[0].Weight != 1 || cfg.Admin.Listen != "127.0.0.1:8989" || cfg.Genlog.Topic != "sluice.genlog" ||
		*cfg.SchedSlice != 100*time.Microsecond {
		t.Fatalf("defaults: %+v", cfg)
	}
	// 0 is kept: the kernel's own slice.
	os.WriteFile(path, []byte("listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\nsched_slice: 0s\n"), 0o600)
	if cfg, err = Load(path); err != nil {
		t.Fatal(err)
	}
	if *cfg.SchedSlice != 0 {
		t.Fatalf("sched_slice: 0s loaded as %v", *cfg.SchedSlice)
	}
}

func TestSectionDefaultsAndRedaction(t *testing.T) {
	cfg, err := Parse("x.yaml", []byte("listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m, password: mp}\n"+
		"admin_token: tok\naccounts: [{user: app, password: ap}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Router.Target != "primary" || cfg.Router.ClassifierCacheSize != 10000 || cfg.Router.Recovery.TransactionReplayAttempts != 5 ||
		cfg.Router.Recovery.TransactionReplayMaxSize != 1<<20 || cfg.Proxy.MaxAllowedPacket != 64<<20 || cfg.Proxy.DrainTimeout != 30*time.Second ||
		cfg.Proxy.Accounts[0].Host != "%" || cfg.Monitor.HeartbeatTable != "sluice.heartbeat" || cfg.Monitor.Failover.Timeout != 10*time.Second ||
		cfg.Monitor.Failover.ReplicationUser.User != "m" || cfg.Monitor.Failover.ReplicationUser.Password != "mp" {
		t.Fatalf("section defaults: %+v", cfg)
	}
	r := cfg.Redacted()
	for what, got := range map[string]string{"service_user": r.ServiceUser.Password, "admin_token": r.Admin.Token,
		"accounts": r.Proxy.Accounts[0].Password, "replication_user": r.Monitor.Failover.ReplicationUser.Password} {
		if got != "********" {
			t.Errorf("%s password shown redacted as %q", what, got)
		}
	}
	if cfg.Proxy.Accounts[0].Password != "ap" || cfg.ServiceUser.Password != "mp" {
		t.Fatal("Redacted changed the config it copied")
	}
}

// TestSigningKeyErrors: genlog.signing_key must name a readable Ed25519
// private key (PKCS#8 PEM); anything else is an error naming the file and
// the line of the key, and never showing the key.
func TestSigningKeyErrors(t *testing.T) {
	dir := t.TempDir()
	good, rsa := filepath.Join(dir, "sluice.key"), filepath.Join(dir, "rsa.key")
	for _, args := range [][]string{
		{"genpkey", "-algorithm", "ed25519", "-out", good},
		{"genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsa},
	} {
		if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	unreadable := filepath.Join(dir, "unreadable.key")
	os.WriteFile(unreadable, []byte("x"), 0o000)
	notPEM := filepath.Join(dir, "text.key")
	os.WriteFile(notPEM, []byte("hello\n"), 0o600)
	secret, _ := os.ReadFile(rsa)
	base := "listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\ngenlog:\n  enabled: true\n  brokers: [127.0.0.1:9092]\n  signing_key: %s\n"
	cfg, err := Parse("x.yaml", []byte(fmt.Sprintf(base, good)))
	if err != nil || cfg.Genlog.SigningKey != good || cfg.Genlog.CheckpointInterval != time.Second {
		t.Fatalf("a good key: %v %+v", err, cfg)
	}
	cases := []struct{ file, want string }{
		{filepath.Join(dir, "missing.key"), "x.yaml:7: genlog.signing_key: cannot read " + filepath.Join(dir, "missing.key") + ": no such file or directory"},
		{rsa, "x.yaml:7: genlog.signing_key: " + rsa + ": a *rsa.PrivateKey, not an Ed25519 key"},
		{notPEM, "x.yaml:7: genlog.signing_key: " + notPEM + ": no PEM block"},
	}
	if os.Geteuid() != 0 {
		cases = append(cases, struct{ file, want string }{unreadable, "x.yaml:7: genlog.signing_key: cannot read " + unreadable + ": permission denied"})
	}
	for _, c := range cases {
		_, err := Parse("x.yaml", []byte(fmt.Sprintf(base, c.file)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("signing_key %s: error %v, want it to contain %q", c.file, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), strings.Split(string(secret), "\n")[1]) {
			t.Errorf("the error shows key material: %v", err)
		}
	}
	_, err = Parse("x.yaml", []byte(fmt.Sprintf(base, good)+"  checkpoint_interval: 1ms\n"))
	if err == nil || !strings.Contains(err.Error(), "x.yaml:8: genlog.checkpoint_interval: 1ms is too short") {
		t.Errorf("checkpoint_interval 1ms: %v", err)
	}
}

// TestKafkaClientSettings: genlog.tls, genlog.sasl and genlog.compression
// are checked at load, each error naming the file, line and key (and the
// file a missing password or CA was to come from); the password is never
// shown, and GET /v1/config hides an inline one.
func TestKafkaClientSettings(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "kafka.pw")
	os.WriteFile(pw, []byte("pa55word\n"), 0o600)
	empty := filepath.Join(dir, "empty.pw")
	os.WriteFile(empty, nil, 0o600)
	base := "listen: 127.0.0.1:4006\nservers: [{name: a, address: '127.0.0.1:1'}]\nservice_user: {user: m}\ngenlog:\n  enabled: true\n  brokers: [k1:9093, k2:9093]\n"
	cfg, err := Parse("x.yaml", []byte(base+"  sasl: {mechanism: scram-sha-512, user: sluice, password_file: "+pw+"}\n  compression: zstd\n"))
	if err != nil || cfg.Genlog.Compression != "zstd" {
		t.Fatalf("good settings: %v", err)
	}
	missing := filepath.Join(dir, "missing.pw")
	cases := []struct{ extra, want string }{
		{"  sasl:\n    mechanism: SCRAM-SHA-512\n    user: sluice\n    password_file: " + missing + "\n",
			"x.yaml:10: genlog.sasl.password_file: cannot read it: open " + missing + ": no such file or directory"},
		{"  sasl: {mechanism: SCRAM-SHA-512, user: sluice, password_file: " + empty + "}\n", "genlog.sasl.password_file: " + empty + " must hold the secret on one line"},
		{"  sasl: {mechanism: SCRAM-SHA-512, user: sluice}\n", "genlog.sasl.password_file: missing: the password of \"sluice\""},
		{"  sasl: {mechanism: GSSAPI, user: sluice, password: x}\n", "genlog.sasl.mechanism: unknown \"GSSAPI\"; use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"},
		{"  sasl: {mechanism: PLAIN, password: x}\n", "genlog.sasl.user: missing"},
		{"  sasl: {mechanism: PLAIN, user: sluice, password: x, password_file: " + pw + "}\n", "genlog.sasl.password: given twice"},
		{"  tls: {ca: " + filepath.Join(dir, "no-ca.pem") + "}\n", "genlog.tls.ca: open " + filepath.Join(dir, "no-ca.pem")},
		{"  tls: {ca: " + pw + "}\n", "genlog.tls.ca: " + pw + " holds no PEM certificate"},
		{"  tls: {cert: " + pw + "}\n", "genlog.tls.key: tls.cert " + pw + " needs its key"},
		{"  compression: brotli\n", "x.yaml:7: genlog.compression: unknown \"brotli\"; use none, gzip, snappy, lz4, zstd"},
	}
	for _, c := range cases {
		_, err := Parse("x.yaml", []byte(base+c.extra))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want it to contain %q", c.extra, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "pa55word") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
	cfg, err = Parse("x.yaml", []byte(base+"  sasl: {mechanism: PLAIN, user: sluice, password: inline-secret}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Redacted(); r.Genlog.SASL.Password != "********" || cfg.Genlog.SASL.Password != "inline-secret" {
		t.Fatalf("genlog.sasl.password redacted as %q", r.Genlog.SASL.Password)
	}
}
