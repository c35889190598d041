package router

import (
	"time"

	"github.com/sluice-proxy/sluice/internal/confkey"
)

// Config is the `router:` section of sluice.yaml (the section's
// transaction replay keys and primary_wait are the proxy's:
// proxy.RecoveryConfig). Zero values mean "use the default"; WithDefaults
// fills them in.
type Config struct {
	// Type is readwritesplit (default) or readconnroute.
	Type string `yaml:"type"`
	// MaxReplicationLag: replicas further behind get no reads. Default 10s.
	MaxReplicationLag time.Duration `yaml:"max_replication_lag"`
	// Balance is least_outstanding (default) or round_robin; both honour weights.
	Balance string `yaml:"balance"`
	// Target is readconnroute's role: primary (default), replica or any.
	Target string `yaml:"target"`
	// ClassifierCacheSize bounds the statement shapes whose class is
	// cached (the Classifier's size). Default 10000.
	ClassifierCacheSize int `yaml:"classifier_cache_size"`
	// CausalReads makes a read after a write wait on the replica for that
	// write's GTID, up to CausalReadsTimeout (default 5s), then fall back
	// to the primary.
	CausalReads        bool          `yaml:"causal_reads"`
	CausalReadsTimeout time.Duration `yaml:"causal_reads_timeout"`
	// MaxReplicaConnections bounds the replica connections one session
	// holds (MaxScale's max_slave_connections); 0: one per replica.
	MaxReplicaConnections int `yaml:"max_replica_connections"`
	// PrimaryReads puts the primary in the read pool beside the replicas,
	// balanced like them (MaxScale's master_accept_reads, ProxySQL's
	// writer_is_also_reader).
	PrimaryReads bool `yaml:"primary_reads"`
}

// WithDefaults returns a copy of c with every zero value that has a
// default replaced by it.
func (c Config) WithDefaults() Config {
	if c.Type == "" {
		c.Type = TypeReadWriteSplit
	}
	if c.MaxReplicationLag == 0 {
		c.MaxReplicationLag = 10 * time.Second
	}
	if c.Target == "" {
		c.Target = "primary"
	}
	if c.Balance == "" {
		c.Balance = "least_outstanding"
	}
	if c.CausalReadsTimeout == 0 {
		c.CausalReadsTimeout = 5 * time.Second
	}
	if c.ClassifierCacheSize == 0 {
		c.ClassifierCacheSize = 10000
	}
	return c
}

// Validate checks c (after WithDefaults); its errors are *confkey.Error
// naming the key within the section.
func (c *Config) Validate() error {
	switch c.Type {
	case TypeReadWriteSplit, TypeReadConnRoute:
	default:
		return confkey.Errorf("type", "unknown router %q; use readwritesplit or readconnroute", c.Type)
	}
	switch c.Target {
	case "primary", "replica", "any":
	default:
		return confkey.Errorf("target", "unknown target %q; use primary, replica or any", c.Target)
	}
	switch c.Balance {
	case "least_outstanding", "round_robin":
	default:
		return confkey.Errorf("balance", "unknown balance %q; use least_outstanding or round_robin", c.Balance)
	}
	if c.MaxReplicaConnections < 0 {
		return confkey.Errorf("max_replica_connections", "must be >= 0 (0: one per replica)")
	}
	if c.ClassifierCacheSize < 0 {
		return confkey.Errorf("classifier_cache_size", "must be > 0")
	}
	return nil
}
