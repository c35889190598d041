package logbroker

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// Fsync policies accepted by Config.Fsync.
const (
	// FsyncAlways acknowledges a produce request only after the appended
	// batches are on stable storage. Concurrent requests share one fsync
	// (group commit).
	FsyncAlways = "always"
	// FsyncInterval acknowledges after the write to the page cache and
	// fsyncs dirty segments every FsyncInterval.
	FsyncInterval = "interval"
	// FsyncOS leaves flushing to the operating system (and Close).
	FsyncOS = "os"
)

// Config is the `broker:` section of sluice's YAML configuration. Zero values
// mean "use the default"; WithDefaults fills them in.
//
// Durability: records acknowledged by the broker survive a crash of the
// process (SIGKILL) under every fsync policy, because a completed write(2) is
// in the kernel's page cache. The policies differ when the machine itself
// fails (power loss, kernel panic). The default is "always": an audit log is
// compliance evidence, so an acknowledged record must survive losing the
// machine too. Group commit keeps its cost to one fsync per batch of
// concurrent requests rather than one per request, which on this class of
// disk (about 0.3 ms per fsync) still sustains several hundred thousand
// records per second. "interval" bounds the loss window to FsyncInterval at
// slightly lower latency; "os" is for throwaway data.
type Config struct {
	// Enabled starts the broker with the proxy.
	Enabled bool `yaml:"enabled"`
	// Listen is the TCP address the broker accepts Kafka clients on.
	// Default 127.0.0.1:9092.
	Listen string `yaml:"listen"`
	// AdvertisedListen is the host:port clients are told to connect to in
	// Metadata and FindCoordinator responses. Default: the address actually
	// listened on (a wildcard host is advertised as 127.0.0.1, so set this
	// when clients connect from other machines).
	AdvertisedListen string `yaml:"advertised_listen"`
	// DataDir holds one directory per partition (<topic>-<partition>) and
	// the broker's own metadata (topic configs, committed group offsets).
	// Default ./data/broker.
	DataDir string `yaml:"data_dir"`
	// Partitions is the partition count of auto-created topics and of
	// CreateTopics requests that ask for the default (-1). Default 4.
	Partitions int `yaml:"partitions"`
	// Retention deletes whole closed segments whose newest record is older
	// than this. Default 168h (7 days). Per topic: retention.ms.
	Retention time.Duration `yaml:"retention"`
	// RetentionBytes caps the size of each partition by deleting its oldest
	// closed segments; 0 means unlimited. Per topic: retention.bytes.
	RetentionBytes int64 `yaml:"retention_bytes"`
	// SegmentBytes rolls the active segment once it would grow past this.
	// Default 1 GiB. Per topic: segment.bytes.
	SegmentBytes int64 `yaml:"segment_bytes"`
	// SegmentAge rolls the active segment once it is this old, so that
	// retention and compaction can act on quiet partitions. Default 168h.
	// Per topic: segment.ms.
	SegmentAge time.Duration `yaml:"segment_age"`
	// RetentionCheckInterval is how often retention and compaction run.
	// Default 1m.
	RetentionCheckInterval time.Duration `yaml:"retention_check_interval"`
	// AutoCreateTopics creates unknown topics on first produce or metadata
	// request. nil means true.
	AutoCreateTopics *bool `yaml:"auto_create_topics"`
	// Fsync is the flush policy: "always" (default), "interval" or "os".
	// See the type's documentation for the trade-off.
	Fsync string `yaml:"fsync"`
	// FsyncInterval is the flush period of the "interval" policy. Default 1s.
	FsyncInterval time.Duration `yaml:"fsync_interval"`
	// MaxRequestBytes is the largest request frame accepted; a client that
	// announces a larger one is disconnected. Default 100 MiB.
	MaxRequestBytes int32 `yaml:"max_request_bytes"`
	// MaxFetchBytes caps the size of one fetch response whatever the client
	// asks for, bounding memory per connection. Default 16 MiB.
	MaxFetchBytes int32 `yaml:"max_fetch_bytes"`
	// MaxInFlightPerConn bounds the requests of one connection that are
	// read but not yet answered (e.g. produce requests waiting for their
	// fsync). Default 16.
	MaxInFlightPerConn int `yaml:"max_in_flight_per_conn"`
	// MaxConnections bounds the client connections open at once, over all
	// listeners. Connections beyond it are closed right after accept (and
	// logged at most every 10s). Default 1024.
	MaxConnections int `yaml:"max_connections"`
	// NodeID is the broker id reported in metadata. Default 0.
	NodeID int32 `yaml:"node_id"`

	// TLS makes the listener speak TLS only (see TLSConfig).
	TLS TLSConfig `yaml:"tls"`
	// SASL makes clients authenticate (see SASLConfig).
	SASL SASLConfig `yaml:"sasl"`
	// ACLs say what each principal may do once clients are identified
	// (SASL or client certificates) or ACLs are listed; see ACL.
	ACLs []ACL `yaml:"acls"`
	// AllowAnonymous lets a listener reachable from other machines serve
	// clients that are not authenticated. Without it such a listen
	// address needs sasl.users or tls.client_ca.
	AllowAnonymous bool `yaml:"allow_anonymous"`
	// ProtectedTopics are the audit topics: append-only for every client
	// whatever the ACLs (no DeleteTopics, DeleteRecords, compaction or
	// retention below AuditMinRetention), and, once authorization is on,
	// written over the network only by a principal whose ACL names the
	// topic itself with write. Sluice fills it from genlog.topic (and its
	// checkpoints topic) and the events topic.
	ProtectedTopics []string `yaml:"protected_topics"`
	// AuditMinRetention is the shortest retention.ms a protected topic
	// may have; a shorter broker.retention does not apply to them.
	// Default 168h.
	AuditMinRetention time.Duration `yaml:"audit_min_retention"`
}

// Defaults used by WithDefaults.
const (
	DefaultListen         = "127.0.0.1:9092"
	DefaultDataDir        = "./data/broker"
	DefaultPartitions     = 4
	DefaultRetention      = 168 * time.Hour
	DefaultSegmentBytes   = 1 << 30
	DefaultSegmentAge     = 168 * time.Hour
	DefaultFsyncInterval  = time.Second
	DefaultMaxRequest     = 100 << 20
	DefaultMaxFetchBytes  = 16 << 20
	DefaultMaxInFlight    = 16
	DefaultMaxConnections = 1024
	DefaultRetentionCheck = time.Minute
)

// WithDefaults returns a copy of c with every zero value replaced by its
// default.
func (c Config) WithDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = DefaultSegmentBytes
	}
	if c.SegmentAge == 0 {
		c.SegmentAge = DefaultSegmentAge
	}
	if c.RetentionCheckInterval == 0 {
		c.RetentionCheckInterval = DefaultRetentionCheck
	}
	if c.AutoCreateTopics == nil {
		t := true
		c.AutoCreateTopics = &t
	}
	if c.Fsync == "" {
		c.Fsync = FsyncAlways
	}
	if c.FsyncInterval == 0 {
		c.FsyncInterval = DefaultFsyncInterval
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequest
	}
	if c.MaxFetchBytes == 0 {
		c.MaxFetchBytes = DefaultMaxFetchBytes
	}
	if c.MaxInFlightPerConn == 0 {
		c.MaxInFlightPerConn = DefaultMaxInFlight
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if len(c.SASL.Users) > 0 && len(c.SASL.Mechanisms) == 0 {
		c.SASL.Mechanisms = []string{MechScramSHA512, MechScramSHA256}
	}
	if c.SASL.ScramIterations == 0 {
		c.SASL.ScramIterations = DefaultScramIterations
	}
	if c.AuditMinRetention == 0 {
		c.AuditMinRetention = DefaultAuditMinRetention
	}
	return c
}

// Validate checks c (after defaults) and names the offending key in its
// error, e.g. "broker.partitions: must be >= 1, got -1".
func (c *Config) Validate() error {
	d := c.WithDefaults()
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("broker.%s: %s", key, fmt.Sprintf(format, args...))
	}
	if err := checkHostPort(d.Listen); err != nil {
		return bad("listen", "%v", err)
	}
	if d.AdvertisedListen != "" {
		if err := checkHostPort(d.AdvertisedListen); err != nil {
			return bad("advertised_listen", "%v", err)
		}
	}
	if d.Partitions < 1 || d.Partitions > 10000 {
		return bad("partitions", "must be >= 1 and <= 10000, got %d", d.Partitions)
	}
	if d.Retention < 0 {
		return bad("retention", "must be > 0, got %s", d.Retention)
	}
	if d.RetentionBytes < 0 {
		return bad("retention_bytes", "must be >= 0 (0 = unlimited), got %d", d.RetentionBytes)
	}
	if d.SegmentBytes < 1024 {
		return bad("segment_bytes", "must be >= 1024, got %d", d.SegmentBytes)
	}
	if d.SegmentBytes > 1<<31-1 {
		// Index entries store positions as int32, as Kafka's do.
		return bad("segment_bytes", "must be < 2GiB, got %d", d.SegmentBytes)
	}
	if d.SegmentAge < 0 {
		return bad("segment_age", "must be > 0, got %s", d.SegmentAge)
	}
	if d.RetentionCheckInterval < 0 {
		return bad("retention_check_interval", "must be > 0, got %s", d.RetentionCheckInterval)
	}
	switch d.Fsync {
	case FsyncAlways, FsyncInterval, FsyncOS:
	default:
		return bad("fsync", "unknown policy %q; use always, interval or os", d.Fsync)
	}
	if d.FsyncInterval < 0 {
		return bad("fsync_interval", "must be > 0, got %s", d.FsyncInterval)
	}
	if d.MaxRequestBytes < 1024 {
		return bad("max_request_bytes", "must be >= 1024, got %d", d.MaxRequestBytes)
	}
	if d.MaxFetchBytes < 1024 {
		return bad("max_fetch_bytes", "must be >= 1024, got %d", d.MaxFetchBytes)
	}
	if d.MaxInFlightPerConn < 1 {
		return bad("max_in_flight_per_conn", "must be >= 1, got %d", d.MaxInFlightPerConn)
	}
	if d.MaxConnections < 1 {
		return bad("max_connections", "must be >= 1, got %d", d.MaxConnections)
	}
	if d.NodeID < 0 {
		return bad("node_id", "must be >= 0, got %d", d.NodeID)
	}
	return d.validateSecurity(bad)
}

func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q in %q is not a number from 0 to 65535", port, addr)
	}
	return nil
}
