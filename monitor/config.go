package monitor

import (
	"crypto/tls"
	"strings"
	"time"

	"github.com/sluice-proxy/sluice/internal/confkey"
)

// Config is the `monitor:` section of sluice.yaml, with what the monitor
// takes from other sections in the fields tagged `yaml:"-"` (set by the
// wiring). Zero values mean "use the default"; WithDefaults fills them in.
type Config struct {
	// Servers are the servers to watch (the top-level servers:).
	Servers []ServerConfig `yaml:"-"`
	// User and Password are the service user's (service_user:).
	User     string `yaml:"-"`
	Password string `yaml:"-"`
	// TLS, when set (tls.backend), secures the monitor's connections as
	// the sessions' are; a server that does not offer TLS is refused.
	TLS *tls.Config `yaml:"-"`
	// Interval is the time between polls. Default 1s.
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one poll of one server. Default 2s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxLag marks a replica lagging above it (router.max_replication_lag);
	// it is usable again below MaxLag*LagHysteresis (default 0.8).
	MaxLag        time.Duration `yaml:"-"`
	LagHysteresis float64       `yaml:"lag_hysteresis"`
	// Heartbeat measures lag with HeartbeatTable (default
	// sluice.heartbeat), written on the primary every interval and read on
	// the replicas.
	Heartbeat      bool           `yaml:"heartbeat"`
	HeartbeatTable string         `yaml:"heartbeat_table"`
	Failover       FailoverConfig `yaml:",inline"`
	// Type is "mariadb" (replication, MySQL too; the default) or "galera"
	// (Galera and Percona XtraDB Cluster).
	Type string `yaml:"type"`
	// PreferredWriter, with Galera, is the node that takes writes while it
	// is synced; otherwise the synced node with the lowest wsrep_local_index.
	PreferredWriter string `yaml:"preferred_writer"`
}

// ServerConfig names one server to watch: an entry of servers:.
type ServerConfig struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	// Weight biases balancing among replicas; 0 means 1.
	Weight int `yaml:"weight"`
	// ProxyProtocol: session connections to this server start with a PROXY
	// v2 header naming the client, so the server's host-based grants and
	// processlist see it; the server must trust Sluice's address for it
	// (MariaDB's proxy_protocol_networks).
	ProxyProtocol bool `yaml:"proxy_protocol"`
}

// FailoverConfig governs automatic failover and rejoin for MariaDB GTID
// replication, as MaxScale's mariadbmon does. Its keys are the monitor
// section's.
type FailoverConfig struct {
	// AutoFailover promotes the most advanced replica once the primary has
	// been down for Timeout (default 10s).
	AutoFailover bool          `yaml:"auto_failover"`
	Timeout      time.Duration `yaml:"failover_timeout"`
	// AutoRejoin points a server that comes back standalone (an old
	// primary) at the current primary.
	AutoRejoin bool `yaml:"auto_rejoin"`
	// ReplicationUser is what replicas log in to the new primary with.
	ReplicationUser Credentials `yaml:"replication_user"`
}

// Credentials is a user and password pair.
type Credentials struct {
	User string `yaml:"user"`
	// Password, or PasswordFile holding it, or ${VAR} (confkey.ResolveSecrets).
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// WithDefaults returns a copy of c with every zero value that has a
// default replaced by it.
func (c Config) WithDefaults() Config {
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	if c.Type == "" {
		c.Type = "mariadb"
	}
	if c.HeartbeatTable == "" {
		c.HeartbeatTable = "sluice.heartbeat"
	}
	if c.Failover.Timeout == 0 {
		c.Failover.Timeout = 10 * time.Second
	}
	if c.LagHysteresis == 0 {
		c.LagHysteresis = 0.8
	}
	return c
}

// Validate checks c (after WithDefaults); its errors are *confkey.Error
// naming the key within the section.
func (c *Config) Validate() error {
	if c.Interval < 10*time.Millisecond {
		return confkey.Errorf("interval", "%v is too short; use 10ms or more", c.Interval)
	}
	switch c.Type {
	case "mariadb", "mysql", "galera":
	default:
		return confkey.Errorf("type", "unknown type %q; use mariadb (replication, MySQL too) or galera", c.Type)
	}
	if c.LagHysteresis <= 0 || c.LagHysteresis > 1 {
		return confkey.Errorf("lag_hysteresis", "must be in (0, 1], e.g. 0.8")
	}
	if db, table, ok := strings.Cut(c.HeartbeatTable, "."); !ok || !isIdent(db) || !isIdent(table) {
		return confkey.Errorf("heartbeat_table", "%q is not database.table (letters, digits, _ and $)", c.HeartbeatTable)
	}
	return nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '$' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return false
		}
	}
	return true
}
