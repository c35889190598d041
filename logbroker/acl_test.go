package logbroker

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestAuthorizerDecisions is the ACL decision as a table.
func TestAuthorizerDecisions(t *testing.T) {
	a := newAuthorizer(Config{
		ProtectedTopics: []string{"sluice.genlog", "sluice.events"},
		ACLs: []ACL{
			{Principal: "reader", Operations: []string{"read", "describe"}, Topics: []string{"sluice.genlog", "sluice.events"}, Groups: []string{"*"}},
			{Principal: "ops", Operations: []string{"all"}, Topics: []string{"*"}, Groups: []string{"prefix:ops-"}, Cluster: true},
			{Principal: "app", Operations: []string{"write", "create"}, Topics: []string{"app.*"}},
			{Principal: "User:clone", Operations: []string{"write"}, Topics: []string{"sluice.genlog", "sluice.*"}},
			{Principal: "*", Operations: []string{"describe"}, Topics: []string{"public"}},
			{Principal: "tuner", Operations: []string{"alter_configs"}, Topics: []string{"app.*"}},
		},
	})
	R, W, D, C, Del := kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationDescribe, kmsg.ACLOperationCreate, kmsg.ACLOperationDelete
	for _, tc := range []struct {
		principal string
		op        aclOp
		kind      resourceKind
		name      string
		want      bool
	}{
		{"reader", R, resTopic, "sluice.genlog", true},
		{"reader", D, resTopic, "sluice.events", true},
		{"reader", W, resTopic, "sluice.genlog", false},
		{"reader", Del, resTopic, "sluice.genlog", false},
		{"reader", R, resTopic, "other", false},
		{"reader", R, resGroup, "anything", true},
		{"reader", D, resCluster, "", false},
		{"ops", Del, resTopic, "x", true},
		{"ops", D, resCluster, "", true},
		{"ops", R, resGroup, "ops-1", true},
		{"ops", R, resGroup, "team-1", false},
		// "*" and prefixes never grant a network write to an audit topic.
		{"ops", W, resTopic, "sluice.genlog", false},
		{"ops", W, resTopic, "sluice.other", true},
		{"ops", C, resTopic, "sluice.genlog", false},
		{"ops", C, resTopic, "sluice.other", true},
		{"clone", W, resTopic, "sluice.genlog", true},
		{"clone", W, resTopic, "sluice.events", false},
		{"app", W, resTopic, "app.orders", true},
		{"app", D, resTopic, "app.orders", true}, // write implies describe
		{"app", R, resTopic, "app.orders", false},
		{"app", C, resTopic, "apples", false},
		{"stranger", D, resTopic, "public", true},
		{"stranger", R, resTopic, "public", false},
		{"", R, resTopic, "sluice.genlog", false},
		{"tuner", kmsg.ACLOperationDescribeConfigs, resTopic, "app.x", true},
		{"tuner", kmsg.ACLOperationAlter, resTopic, "app.x", false},
	} {
		if got := a.allowed(tc.principal, tc.op, tc.kind, tc.name); got != tc.want {
			t.Errorf("%s %s on %d %q: %v, want %v", tc.principal, tc.op, tc.kind, tc.name, got, tc.want)
		}
	}
	if a.allowedAnyTopic("reader", W) || !a.allowedAnyTopic("app", W) {
		t.Error("allowedAnyTopic: reader may not write anywhere, app may")
	}
	var off *authorizer
	if !off.allowed("anyone", Del, resTopic, "sluice.genlog") {
		t.Error("a nil authorizer (no auth configured) allows everything the ACLs govern")
	}
	if newAuthorizer(Config{}) != nil {
		t.Error("no sasl, client_ca or acls: authorization must be off")
	}
}

func TestParsePattern(t *testing.T) {
	for _, tc := range []struct {
		in        string
		match, no string
		bad       bool
	}{
		{in: "*", match: "anything"},
		{in: "sluice.*", match: "sluice.genlog", no: "sluicex"},
		{in: "prefix:sluice.", match: "sluice.events", no: "other"},
		{in: "sluice.genlog", match: "sluice.genlog", no: "sluice.genlog2"},
		{in: "", bad: true},
		{in: "a*b", bad: true},
		{in: "prefix:", bad: true},
		{in: "**", bad: true},
	} {
		p, err := parsePattern(tc.in)
		if (err != nil) != tc.bad {
			t.Fatalf("parsePattern(%q): %v", tc.in, err)
		}
		if tc.bad {
			continue
		}
		if !p.matches(tc.match) || (tc.no != "" && p.matches(tc.no)) {
			t.Errorf("%q: matches(%q)=%v, matches(%q)=%v", tc.in, tc.match, p.matches(tc.match), tc.no, p.matches(tc.no))
		}
	}
}

// TestSecurityConfigValidate checks the secure defaults and that errors
// name the key and never the password.
func TestSecurityConfigValidate(t *testing.T) {
	users := []SASLUser{{Name: "u", Password: "s3cret-pw"}}
	tlsOn := TLSConfig{Cert: "c.pem", Key: "k.pem"}
	for _, tc := range []struct {
		name string
		cfg  Config
		key  string // "" = valid
	}{
		{"loopback anonymous", Config{Listen: "127.0.0.1:9092"}, ""},
		{"localhost anonymous", Config{Listen: "localhost:9092"}, ""},
		{"wildcard anonymous", Config{Listen: "0.0.0.0:9092"}, "broker.listen"},
		{"empty host anonymous", Config{Listen: ":9092"}, "broker.listen"},
		{"LAN anonymous", Config{Listen: "10.0.0.5:9092"}, "broker.listen"},
		{"wildcard allowed anonymous", Config{Listen: "0.0.0.0:9092", AllowAnonymous: true}, ""},
		{"wildcard with SASL", Config{Listen: "0.0.0.0:9092", SASL: SASLConfig{Users: users}}, ""},
		{"wildcard with client certs", Config{Listen: "0.0.0.0:9092", TLS: TLSConfig{Cert: "c", Key: "k", ClientCA: "ca"}}, ""},
		{"PLAIN without TLS", Config{SASL: SASLConfig{Users: users, Mechanisms: []string{MechPlain}}}, "broker.sasl.mechanisms"},
		{"PLAIN without TLS allowed", Config{SASL: SASLConfig{Users: users, Mechanisms: []string{MechPlain}, AllowPlainWithoutTLS: true}}, ""},
		{"PLAIN with TLS", Config{TLS: tlsOn, SASL: SASLConfig{Users: users, Mechanisms: []string{MechPlain}}}, ""},
		{"unknown mechanism", Config{SASL: SASLConfig{Users: users, Mechanisms: []string{"GSSAPI"}}}, "broker.sasl.mechanisms[0]"},
		{"mechanisms without users", Config{SASL: SASLConfig{Mechanisms: []string{MechScramSHA512}}}, "broker.sasl.users"},
		{"password read from its file by the loader", Config{SASL: SASLConfig{Users: []SASLUser{{Name: "u", Password: "s3cret-pw", PasswordFile: "f"}}}}, ""},
		{"neither password nor file", Config{SASL: SASLConfig{Users: []SASLUser{{Name: "u"}}}}, "broker.sasl.users[0]"},
		{"duplicate user", Config{SASL: SASLConfig{Users: []SASLUser{users[0], users[0]}}}, "broker.sasl.users[1].name"},
		{"few iterations", Config{SASL: SASLConfig{Users: users, ScramIterations: 1000}}, "broker.sasl.scram_iterations"},
		{"cert without key", Config{TLS: TLSConfig{Cert: "c"}}, "broker.tls"},
		{"client_ca without cert", Config{TLS: TLSConfig{ClientCA: "ca"}}, "broker.tls.client_ca"},
		{"bad operation", Config{ACLs: []ACL{{Principal: "u", Operations: []string{"own"}, Topics: []string{"*"}}}}, "broker.acls[0].operations[0]"},
		{"ACL on nothing", Config{ACLs: []ACL{{Principal: "u", Operations: []string{"read"}}}}, "broker.acls[0]"},
		{"ACL bad pattern", Config{ACLs: []ACL{{Principal: "u", Operations: []string{"read"}, Groups: []string{"a*b"}}}}, "broker.acls[0].groups[0]"},
		{"ACL without principal", Config{ACLs: []ACL{{Operations: []string{"read"}, Topics: []string{"*"}}}}, "broker.acls[0].principal"},
		{"bad protected topic", Config{ProtectedTopics: []string{"no spaces"}}, "broker.protected_topics[0]"},
	} {
		err := tc.cfg.Validate()
		switch {
		case tc.key == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.key != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.key+": ")):
			t.Errorf("%s: %v, want an error of %s", tc.name, err, tc.key)
		case err != nil && strings.Contains(err.Error(), "s3cret-pw"):
			t.Errorf("%s: the error shows the password: %v", tc.name, err)
		}
	}
}

func TestProtectedTopicPolicy(t *testing.T) {
	cfg := Config{}.WithDefaults()
	for _, tc := range []struct {
		configs map[string]string
		refused bool
	}{
		{nil, false},
		{map[string]string{"cleanup.policy": "delete"}, false},
		{map[string]string{"cleanup.policy": "compact"}, true},
		{map[string]string{"cleanup.policy": "delete,compact"}, true},
		{map[string]string{"retention.ms": "-1"}, false},
		{map[string]string{"retention.ms": "604800000"}, false},
		{map[string]string{"retention.ms": "3600000"}, true},
		{map[string]string{"retention.bytes": "1048576"}, true},
		{map[string]string{"retention.bytes": "-1"}, false},
	} {
		err := protectedConfigError(cfg, "sluice.genlog", tc.configs)
		if (err != nil) != tc.refused {
			t.Errorf("%v: %v, refused want %v", tc.configs, err, tc.refused)
		}
	}
	// Whatever a protected topic's configs or broker.retention say, it keeps
	// at least audit_min_retention and is never compacted.
	short := Config{Retention: time.Hour}.WithDefaults()
	s, _ := resolveSettings(short, map[string]string{"cleanup.policy": "compact"})
	s = protectSettings(short, s)
	if s.retention != DefaultAuditMinRetention || s.compact {
		t.Fatalf("protected settings: %+v", s)
	}
	s, _ = resolveSettings(short, map[string]string{"retention.ms": "-1"})
	if s = protectSettings(short, s); s.retention != 0 {
		t.Fatalf("keep-forever must stay forever: %+v", s)
	}
}
