package logbroker

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// TLSConfig is broker.tls. With Cert and Key set the listener speaks only
// TLS; with ClientCA set too, every client must present a certificate
// signed by it, and the certificate's common name is the client's
// principal unless it then authenticates with SASL.
type TLSConfig struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"`
}

// Enabled reports whether the listener speaks TLS.
func (t TLSConfig) Enabled() bool { return t.Cert != "" || t.Key != "" }

// SASLConfig is broker.sasl. With users configured every client must
// authenticate (SaslHandshake + SaslAuthenticate) before any request but
// ApiVersions.
type SASLConfig struct {
	// Mechanisms offered, in the order given. Default with users:
	// [SCRAM-SHA-512, SCRAM-SHA-256]. PLAIN sends the password itself and
	// is refused on a listener without TLS unless AllowPlainWithoutTLS.
	Mechanisms []string `yaml:"mechanisms"`
	// Users who may authenticate.
	Users []SASLUser `yaml:"users"`
	// AllowPlainWithoutTLS lets PLAIN be offered on a plaintext listener,
	// where anyone on the path reads the password.
	AllowPlainWithoutTLS bool `yaml:"allow_plain_without_tls"`
	// ScramIterations is the PBKDF2 iteration count of the SCRAM
	// credentials derived at start. Default 8192; at least 4096.
	ScramIterations int `yaml:"scram_iterations"`
	// SessionLifetime, when set, is how long an authentication lasts
	// (KIP-368): clients are told in SaslAuthenticate v1+ and must
	// re-authenticate on the connection before it ends, or the broker
	// closes the connection. 0: sessions do not expire.
	SessionLifetime time.Duration `yaml:"session_lifetime"`
}

// SASLUser is one of broker.sasl.users: a name and its password, given as
// password (which Sluice's config loader expands from ${VAR}) or
// password_file (one line; the loader reads it into Password, and New
// reads it when Password is empty). The password is turned into salted
// SCRAM credentials at start and not kept.
type SASLUser struct {
	Name         string `yaml:"name"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// ACL is one of broker.acls: it allows Principal the Operations on the
// Topics and Groups named (a name, "*" for all, or a prefix written
// "prefix:sluice." or "sluice.*"), and on the cluster when Cluster is set.
// Nothing is allowed that no ACL allows, once authentication is on.
type ACL struct {
	// Principal is a SASL user name or a client certificate's common
	// name ("User:" in front is accepted); "*" is every authenticated
	// client.
	Principal  string   `yaml:"principal"`
	Operations []string `yaml:"operations"`
	Topics     []string `yaml:"topics"`
	Groups     []string `yaml:"groups"`
	Cluster    bool     `yaml:"cluster"`
}

// SASL mechanism names.
const (
	MechPlain       = "PLAIN"
	MechScramSHA256 = "SCRAM-SHA-256"
	MechScramSHA512 = "SCRAM-SHA-512"
)

// Defaults of the security keys.
const (
	DefaultScramIterations   = 8192
	MinScramIterations       = 4096
	DefaultAuditMinRetention = 168 * time.Hour
)

// authOn reports whether clients are identified (SASL or client
// certificates) or ACLs are configured: then every request is checked
// against the ACLs.
func (c *Config) authOn() bool {
	return len(c.SASL.Users) > 0 || c.TLS.ClientCA != "" || len(c.ACLs) > 0
}

// isLoopbackListen reports whether addr's host can only be reached from
// this machine.
func isLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validateSecurity checks the tls, sasl, acls, protected_topics and
// allow_anonymous keys of d (defaults applied).
func (d *Config) validateSecurity(bad func(key, format string, args ...any) error) error {
	if d.TLS.Enabled() {
		if d.TLS.Cert == "" || d.TLS.Key == "" {
			return bad("tls", "cert and key go together; set both or neither")
		}
	} else if d.TLS.ClientCA != "" {
		return bad("tls.client_ca", "needs tls.cert and tls.key: client certificates are checked in the TLS handshake")
	}
	seen := make(map[string]bool)
	for i, u := range d.SASL.Users {
		key := fmt.Sprintf("sasl.users[%d]", i)
		switch {
		case u.Name == "":
			return bad(key+".name", "missing")
		case strings.ContainsAny(u.Name, ",=") || strings.TrimSpace(u.Name) != u.Name:
			return bad(key+".name", "%q: a user name cannot contain ',' or '=' or surrounding spaces", u.Name)
		case seen[u.Name]:
			return bad(key+".name", "user %q is listed twice", u.Name)
		case u.Password == "" && u.PasswordFile == "":
			return bad(key, "give password (or ${VAR}) or password_file")
		}
		seen[u.Name] = true
	}
	plain := false
	for i, m := range d.SASL.Mechanisms {
		switch m {
		case MechScramSHA256, MechScramSHA512:
		case MechPlain:
			plain = true
		default:
			return bad(fmt.Sprintf("sasl.mechanisms[%d]", i), "unknown mechanism %q; use SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", m)
		}
	}
	if len(d.SASL.Users) == 0 && len(d.SASL.Mechanisms) > 0 {
		return bad("sasl.users", "empty while sasl.mechanisms is set: nobody could authenticate")
	}
	if plain && !d.TLS.Enabled() && !d.SASL.AllowPlainWithoutTLS {
		return bad("sasl.mechanisms", "PLAIN sends passwords in clear: it needs broker.tls, or broker.sasl.allow_plain_without_tls: true")
	}
	if d.SASL.ScramIterations < MinScramIterations {
		return bad("sasl.scram_iterations", "must be >= %d, got %d", MinScramIterations, d.SASL.ScramIterations)
	}
	if d.SASL.SessionLifetime < 0 || (d.SASL.SessionLifetime > 0 && d.SASL.SessionLifetime < time.Second) {
		return bad("sasl.session_lifetime", "must be 0 (no expiry) or at least 1s, got %s", d.SASL.SessionLifetime)
	}
	for i, a := range d.ACLs {
		key := fmt.Sprintf("acls[%d]", i)
		if strings.TrimPrefix(a.Principal, "User:") == "" {
			return bad(key+".principal", "missing; a user name, a certificate common name or \"*\"")
		}
		if len(a.Operations) == 0 {
			return bad(key+".operations", "empty")
		}
		for j, op := range a.Operations {
			if _, ok := parseOperation(op); !ok {
				return bad(fmt.Sprintf("%s.operations[%d]", key, j), "unknown operation %q; use %s", op, strings.Join(operationNames(), ", "))
			}
		}
		if len(a.Topics) == 0 && len(a.Groups) == 0 && !a.Cluster {
			return bad(key, "names no topics, groups or cluster: it allows nothing")
		}
		for j, p := range a.Topics {
			if _, err := parsePattern(p); err != nil {
				return bad(fmt.Sprintf("%s.topics[%d]", key, j), "%v", err)
			}
		}
		for j, p := range a.Groups {
			if _, err := parsePattern(p); err != nil {
				return bad(fmt.Sprintf("%s.groups[%d]", key, j), "%v", err)
			}
		}
	}
	for i, t := range d.ProtectedTopics {
		if !validTopicName(t) {
			return bad(fmt.Sprintf("protected_topics[%d]", i), "%q is not a topic name", t)
		}
	}
	if d.AuditMinRetention < 0 {
		return bad("audit_min_retention", "must be > 0, got %s", d.AuditMinRetention)
	}
	identified := len(d.SASL.Users) > 0 || d.TLS.ClientCA != ""
	if !identified && !d.AllowAnonymous && !isLoopbackListen(d.Listen) {
		return bad("listen", "%s is reachable from other machines but clients are not authenticated, so anyone could read the audit trail: "+
			"configure broker.sasl.users or broker.tls.client_ca, listen on 127.0.0.1, or set broker.allow_anonymous: true", d.Listen)
	}
	return nil
}

// serverTLS builds the listener's TLS configuration from broker.tls.
func (t TLSConfig) serverTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("broker.tls: load cert %s and key %s: %w", t.Cert, t.Key, err)
	}
	// Full-size records from the first byte: consumers fetch megabytes at
	// a time, and smaller records only add per-record cost.
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, DynamicRecordSizingDisabled: true}
	if t.ClientCA != "" {
		pem, err := os.ReadFile(t.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("broker.tls.client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker.tls.client_ca: %s holds no PEM certificate", t.ClientCA)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}
