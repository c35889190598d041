// Package config loads and validates Sluice's YAML configuration.
//
// Every key is documented in configs/sluice.yaml. Errors name the file, the
// key and its line, and say what to change, because an operator reads them at
// three in the morning.
package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-proxy/sluice/filter"
	"github.com/sluice-proxy/sluice/logbroker"
)

// Config is the whole of sluice.yaml.
type Config struct {
	// Name identifies this instance in logs and audit records (default: the host name).
	Name        string `yaml:"name"`
	Listen      string `yaml:"listen"`
	AdminListen string `yaml:"admin_listen"`
	// AdminToken, when set, is required as "Authorization: Bearer TOKEN"
	// on every admin request but GET /health.
	AdminToken string `yaml:"admin_token"`
	// QueryDigests bounds the statement shapes whose statistics are kept
	// for GET /v1/digests (least recently seen evicted). Default 1000; -1
	// keeps none.
	QueryDigests int `yaml:"query_digests"`
	// ListenReusePort sets SO_REUSEPORT on the client listener so several
	// Sluice instances can share one port; the kernel spreads connections.
	ListenReusePort bool `yaml:"listen_reuseport"`
	// MaxConnections caps concurrent client sessions; 0 means unlimited.
	MaxConnections int `yaml:"max_connections"`
	// MaxUserConnections caps each user's concurrent sessions (error 1203,
	// as MySQL's max_user_connections); UserMaxConnections overrides it per
	// user. 0 means unlimited.
	MaxUserConnections int            `yaml:"max_user_connections"`
	UserMaxConnections map[string]int `yaml:"user_max_connections"`
	// ClientIdleTimeout closes a session idle this long between commands
	// (MySQL's wait_timeout); 0 never does.
	ClientIdleTimeout time.Duration `yaml:"client_idle_timeout"`
	// BackendReadTimeout bounds how long one command's answer may take from
	// a server before the client gets an error and that connection is
	// closed; 0 waits as long as the server takes.
	BackendReadTimeout time.Duration `yaml:"backend_read_timeout"`
	// MaxProcs caps the threads running Go code (GOMAXPROCS); 0 leaves
	// Go's default, one per CPU.
	MaxProcs int `yaml:"max_procs"`
	// SchedSlice is the scheduler slice Sluice's threads ask the kernel
	// for (Linux 6.12 and later): a proxy runs in short bursts that queries
	// wait on, and a short slice lets it run sooner after a wake-up. Unset:
	// 100µs; 0s leaves the kernel's default.
	SchedSlice *time.Duration `yaml:"sched_slice"`

	Servers     []Server    `yaml:"servers"`
	ServiceUser Credentials `yaml:"service_user"`
	// Accounts are client accounts known from the config rather than loaded
	// from the servers, for setups where the service user cannot read
	// mysql.user.
	Accounts []Account `yaml:"accounts"`
	// UsersRefreshInterval throttles reloading accounts from the servers after
	// an unknown user or a failed password check.
	UsersRefreshInterval time.Duration `yaml:"users_refresh_interval"`

	// ServerVersion overrides the version string sent to clients in the
	// handshake; empty means the primary's own version.
	ServerVersion string `yaml:"server_version"`
	// MaxAllowedPacket is the largest client command Sluice accepts.
	MaxAllowedPacket int `yaml:"max_allowed_packet"`
	// ConnectTimeout bounds dialing and logging in to a backend.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// DrainTimeout bounds how long SIGTERM waits for sessions to finish.
	DrainTimeout time.Duration `yaml:"drain_timeout"`

	Router Router `yaml:"router"`
	TLS    TLS    `yaml:"tls"`
	// Filters run in order before routing: regex rewrites, firewall refuses.
	Filters []filter.Spec    `yaml:"filters"`
	Monitor Monitor          `yaml:"monitor"`
	Genlog  Genlog           `yaml:"genlog"`
	Broker  logbroker.Config `yaml:"broker"`
	Log     Log              `yaml:"log"`

	// File is the path the config was loaded from.
	File string `yaml:"-"`
}

// TLS configures TLS for clients and to the backends.
type TLS struct {
	// Cert and Key (PEM files) enable TLS for clients that ask for it.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// Require refuses clients that do not use TLS (error 3159).
	Require bool `yaml:"require"`
	// MinVersion is the oldest TLS version accepted: 1.2 (default) or 1.3.
	MinVersion string `yaml:"min_version"`
	// Backend uses TLS on every connection to the servers, verifying their
	// certificates against BackendCA (default: the system's roots) for
	// BackendServerName (default: the host of the server's address).
	Backend                   bool   `yaml:"backend"`
	BackendCA                 string `yaml:"backend_ca"`
	BackendServerName         string `yaml:"backend_server_name"`
	BackendInsecureSkipVerify bool   `yaml:"backend_insecure_skip_verify"`
}

func (t *TLS) minVersion() uint16 {
	if t.MinVersion == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// ClientConfig is the TLS config offered to clients; nil without a cert.
func (t *TLS) ClientConfig() (*tls.Config, error) {
	if t.Cert == "" && t.Key == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: t.minVersion()}, nil
}

// BackendConfig is the TLS config for connections to the servers; nil
// unless Backend is set.
func (t *TLS) BackendConfig() (*tls.Config, error) {
	if !t.Backend {
		return nil, nil
	}
	c := &tls.Config{MinVersion: t.minVersion(), ServerName: t.BackendServerName, InsecureSkipVerify: t.BackendInsecureSkipVerify}
	if t.BackendCA != "" {
		pem, err := os.ReadFile(t.BackendCA)
		if err != nil {
			return nil, err
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", t.BackendCA)
		}
	}
	return c, nil
}

// Redacted is a copy of the config with every password and token replaced
// by "********", for showing it (GET /v1/config).
func (c *Config) Redacted() *Config {
	r := *c
	const hidden = "********"
	hide := func(s *string) {
		if *s != "" {
			*s = hidden
		}
	}
	hide(&r.ServiceUser.Password)
	hide(&r.Monitor.ReplicationUser.Password)
	hide(&r.AdminToken)
	r.Accounts = append([]Account(nil), c.Accounts...)
	for i := range r.Accounts {
		hide(&r.Accounts[i].Password)
	}
	return &r
}

// Server is one backend. Its role is discovered by the monitor.
type Server struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	// Weight biases balancing among replicas; 0 means 1.
	Weight int `yaml:"weight"`
}

// Credentials is a user and password pair.
type Credentials struct {
	User     string `yaml:"user"`
	Password string `yaml:"password"`
}

// Account is a client account declared in the config.
type Account struct {
	User     string `yaml:"user"`
	Host     string `yaml:"host"`
	Password string `yaml:"password"`
}

// Router chooses where statements go.
type Router struct {
	Type              string        `yaml:"type"`
	MaxReplicationLag time.Duration `yaml:"max_replication_lag"`
	// Target is readconnroute's choice of backend role: primary, replica or any.
	Target string `yaml:"target"`
	// Balance picks among usable replicas: least_outstanding or round_robin.
	Balance string `yaml:"balance"`
	// ClassifierCacheSize bounds the statement shapes whose class is cached.
	ClassifierCacheSize int `yaml:"classifier_cache_size"`
	// CausalReads: a read after a write waits on the replica for the write.
	CausalReads        bool          `yaml:"causal_reads"`
	CausalReadsTimeout time.Duration `yaml:"causal_reads_timeout"`
	// MaxReplicaConnections: at most this many replica connections per
	// session; 0 means one per replica.
	MaxReplicaConnections int `yaml:"max_replica_connections"`
	// PrimaryReads: the primary serves reads too, balanced with the
	// replicas.
	PrimaryReads bool `yaml:"primary_reads"`
	// TransactionReplay: replay an open transaction on the next primary
	// when its primary is lost; TransactionReplayMaxSize bounds the
	// statement text kept per session (bytes).
	TransactionReplay        bool `yaml:"transaction_replay"`
	TransactionReplayMaxSize int  `yaml:"transaction_replay_max_size"`
	// TransactionReplayRetryOnDeadlock: a transaction the server rolled
	// back as a deadlock victim is replayed on the same connection, up to
	// TransactionReplayAttempts times, instead of the client seeing 1213.
	TransactionReplayRetryOnDeadlock bool `yaml:"transaction_replay_retry_on_deadlock"`
	TransactionReplayAttempts        int  `yaml:"transaction_replay_attempts"`
	// PrimaryWait: a statement for the primary while none is known (a
	// failover under way) waits this long for one before it fails; 0 fails
	// at once. MaxScale's delayed_retry, ProxySQL's wait for a writer.
	PrimaryWait time.Duration `yaml:"primary_wait"`
}

// Monitor polls the servers.
type Monitor struct {
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one poll of one server.
	Timeout time.Duration `yaml:"timeout"`
	// Type is mariadb (replication; MySQL too) or galera (Galera, PXC).
	Type string `yaml:"type"`
	// PreferredWriter: with galera, the node that takes writes while synced.
	PreferredWriter string `yaml:"preferred_writer"`
	// Heartbeat measures lag with a table the monitor writes on the
	// primary every interval (HeartbeatTable) and reads on the replicas.
	Heartbeat      bool   `yaml:"heartbeat"`
	HeartbeatTable string `yaml:"heartbeat_table"`
	// LagHysteresis: a lagging replica is usable again once its lag is
	// below router.max_replication_lag times this fraction.
	LagHysteresis float64 `yaml:"lag_hysteresis"`
	// AutoFailover promotes the most advanced replica when the primary has
	// been down for FailoverTimeout (MariaDB GTID replication).
	AutoFailover    bool          `yaml:"auto_failover"`
	FailoverTimeout time.Duration `yaml:"failover_timeout"`
	// AutoRejoin points a server that comes back standalone at the primary.
	AutoRejoin bool `yaml:"auto_rejoin"`
	// ReplicationUser is what replicas log in to a new primary with;
	// default: the service user.
	ReplicationUser Credentials `yaml:"replication_user"`
}

// Genlog is the query-logging filter.
type Genlog struct {
	Enabled bool     `yaml:"enabled"`
	Topic   string   `yaml:"topic"`
	Brokers []string `yaml:"brokers"`
	// MaxQueryBytes truncates logged statements; truncation is marked.
	MaxQueryBytes int `yaml:"max_query_bytes"`
	// Redact: "" (log statements) or "literals" (log fingerprints).
	Redact string `yaml:"redact"`
	// Include and Exclude select query records by user or database.
	Include GenlogSelect `yaml:"include"`
	Exclude GenlogSelect `yaml:"exclude"`
	// Sample logs this fraction of query records; 1 (default) logs all.
	Sample float64 `yaml:"sample"`
	// Params logs prepared statements' parameter values.
	Params bool `yaml:"params"`
	// GTID records the GTID each committed write produced (MariaDB).
	GTID bool `yaml:"gtid"`
	// QueueSize bounds records waiting for the broker.
	QueueSize int `yaml:"queue_size"`
	// OnFull: when the broker is away or slow, spill (to SpillFile, replayed
	// in order later), block (the query waits) or drop (counted).
	OnFull        string `yaml:"on_full"`
	SpillFile     string `yaml:"spill_file"`
	SpillMaxBytes int64  `yaml:"spill_max_bytes"`
}

// GenlogSelect names users and databases.
type GenlogSelect struct {
	Users     []string `yaml:"users"`
	Databases []string `yaml:"databases"`
}

// Log configures Sluice's own log.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Error is a configuration problem, located in the file.
type Error struct {
	File string
	Key  string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", loc, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Msg)
}

// Load reads, defaults and validates the config in file.
func Load(file string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &Error{File: file, Msg: fmt.Sprintf("cannot read config: %v", err)}
	}
	return Parse(file, data)
}

// Parse decodes data (named file in errors), applies defaults and validates.
func Parse(file string, data []byte) (*Config, error) {
	return parse(file, data, (*Config).validate)
}

// LoadBroker reads a config for `sluice broker`: only the broker and log
// sections must be valid, and the broker runs whatever broker.enabled says.
func LoadBroker(file string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &Error{File: file, Msg: fmt.Sprintf("cannot read config: %v", err)}
	}
	return parse(file, data, func(c *Config) error {
		c.Broker.Enabled = true
		if err := c.Broker.Validate(); err != nil {
			return brokerError(err)
		}
		return nil
	})
}

func parse(file string, data []byte, validate func(*Config) error) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(file, err)
	}
	cfg := &Config{File: file}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: file, Msg: "config is empty; see configs/sluice.yaml for every key"}
		}
		return nil, yamlError(file, err)
	}
	cfg.setDefaults()
	if err := validate(cfg); err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.File = file
			ce.Line = lineOf(&root, ce.Key)
		}
		return nil, err
	}
	return cfg, nil
}

// yamlError turns yaml.v3's messages ("line 3: field foo not found in type
// config.Config") into one line naming the file.
func yamlError(file string, err error) error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.IndexByte(rest, ':'); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line = n
				msg = strings.TrimSpace(rest[i+1:])
			}
		}
	}
	if strings.Contains(msg, "not found in type") {
		field := strings.TrimPrefix(msg, "field ")
		if i := strings.Index(field, " not found"); i > 0 {
			field = field[:i]
		}
		msg = fmt.Sprintf("unknown key %q; see configs/sluice.yaml for the keys that exist", field)
	}
	return &Error{File: file, Line: line, Msg: msg}
}

// DefaultSchedSlice is sched_slice when unset; the kernel takes slices
// from MinSchedSlice to MaxSchedSlice.
const (
	DefaultSchedSlice = 100 * time.Microsecond
	MinSchedSlice     = 100 * time.Microsecond
	MaxSchedSlice     = 100 * time.Millisecond
)

func (c *Config) setDefaults() {
	if c.Name == "" {
		c.Name, _ = os.Hostname()
	}
	if c.QueryDigests == 0 {
		c.QueryDigests = 1000
	}
	if c.AdminListen == "" {
		c.AdminListen = "127.0.0.1:8989"
	}
	if c.UsersRefreshInterval == 0 {
		c.UsersRefreshInterval = 30 * time.Second
	}
	if c.MaxAllowedPacket == 0 {
		c.MaxAllowedPacket = 64 << 20
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.SchedSlice == nil {
		d := DefaultSchedSlice
		c.SchedSlice = &d
	}
	if c.Router.Type == "" {
		c.Router.Type = "readwritesplit"
	}
	if c.Router.MaxReplicationLag == 0 {
		c.Router.MaxReplicationLag = 10 * time.Second
	}
	if c.Router.Target == "" {
		c.Router.Target = "primary"
	}
	if c.Router.Balance == "" {
		c.Router.Balance = "least_outstanding"
	}
	if c.Router.CausalReadsTimeout == 0 {
		c.Router.CausalReadsTimeout = 5 * time.Second
	}
	if c.Router.ClassifierCacheSize == 0 {
		c.Router.ClassifierCacheSize = 10000
	}
	if c.Router.TransactionReplayMaxSize == 0 {
		c.Router.TransactionReplayMaxSize = 1 << 20
	}
	if c.Router.TransactionReplayAttempts == 0 {
		c.Router.TransactionReplayAttempts = 5
	}
	if c.Monitor.Interval == 0 {
		c.Monitor.Interval = time.Second
	}
	if c.Monitor.Timeout == 0 {
		c.Monitor.Timeout = 2 * time.Second
	}
	if c.Monitor.Type == "" {
		c.Monitor.Type = "mariadb"
	}
	if c.Monitor.HeartbeatTable == "" {
		c.Monitor.HeartbeatTable = "sluice.heartbeat"
	}
	if c.Monitor.FailoverTimeout == 0 {
		c.Monitor.FailoverTimeout = 10 * time.Second
	}
	if c.Monitor.ReplicationUser.User == "" {
		c.Monitor.ReplicationUser = c.ServiceUser
	}
	if c.Monitor.LagHysteresis == 0 {
		c.Monitor.LagHysteresis = 0.8
	}
	if c.Genlog.Topic == "" {
		c.Genlog.Topic = "sluice.genlog"
	}
	if c.Genlog.MaxQueryBytes == 0 {
		c.Genlog.MaxQueryBytes = 64 << 10
	}
	if c.Genlog.QueueSize == 0 {
		c.Genlog.QueueSize = 100000
	}
	if c.Genlog.OnFull == "" {
		c.Genlog.OnFull = "spill"
	}
	c.Broker = c.Broker.WithDefaults()
	if c.Genlog.SpillFile == "" {
		// Beside the broker's data: ./data/genlog.spill by default.
		c.Genlog.SpillFile = filepath.Join(filepath.Dir(c.Broker.DataDir), "genlog.spill")
	}
	if c.Genlog.SpillMaxBytes == 0 {
		c.Genlog.SpillMaxBytes = 1 << 30
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	for i := range c.Servers {
		if c.Servers[i].Weight == 0 {
			c.Servers[i].Weight = 1
		}
	}
	for i := range c.Accounts {
		if c.Accounts[i].Host == "" {
			c.Accounts[i].Host = "%"
		}
	}
}

func (c *Config) validate() error {
	if c.Listen == "" {
		return &Error{Key: "listen", Msg: "missing; set the client listener address, e.g. listen: 127.0.0.1:4006"}
	}
	if err := checkAddr("listen", c.Listen); err != nil {
		return err
	}
	if err := checkAddr("admin_listen", c.AdminListen); err != nil {
		return err
	}
	if len(c.Servers) == 0 {
		return &Error{Key: "servers", Msg: "no servers; list at least one backend with name and address"}
	}
	names := map[string]bool{}
	for i, s := range c.Servers {
		key := fmt.Sprintf("servers[%d]", i)
		if s.Name == "" {
			return &Error{Key: key + ".name", Msg: "missing; give every server a unique name"}
		}
		if names[s.Name] {
			return &Error{Key: key + ".name", Msg: fmt.Sprintf("duplicate server name %q; names must be unique", s.Name)}
		}
		names[s.Name] = true
		if err := checkAddr(key+".address", s.Address); err != nil {
			return err
		}
		if s.Weight < 0 {
			return &Error{Key: key + ".weight", Msg: "must be >= 0"}
		}
	}
	if c.ServiceUser.User == "" {
		return &Error{Key: "service_user.user", Msg: "missing; Sluice needs an account to monitor the servers and load client accounts"}
	}
	for i, a := range c.Accounts {
		if a.User == "" {
			return &Error{Key: fmt.Sprintf("accounts[%d].user", i), Msg: "missing"}
		}
	}
	switch c.Router.Type {
	case "readwritesplit", "readconnroute":
	default:
		return &Error{Key: "router.type", Msg: fmt.Sprintf("unknown router %q; use readwritesplit or readconnroute", c.Router.Type)}
	}
	switch c.Router.Target {
	case "primary", "replica", "any":
	default:
		return &Error{Key: "router.target", Msg: fmt.Sprintf("unknown target %q; use primary, replica or any", c.Router.Target)}
	}
	switch c.Router.Balance {
	case "least_outstanding", "round_robin":
	default:
		return &Error{Key: "router.balance", Msg: fmt.Sprintf("unknown balance %q; use least_outstanding or round_robin", c.Router.Balance)}
	}
	if c.Router.TransactionReplayMaxSize < 0 || c.Router.TransactionReplayMaxSize > 64<<20 {
		return &Error{Key: "router.transaction_replay_max_size", Msg: fmt.Sprintf("%d is out of range; use 1 to 67108864 bytes, e.g. 1048576", c.Router.TransactionReplayMaxSize)}
	}
	if c.Router.TransactionReplayAttempts < 0 || c.Router.TransactionReplayAttempts > 100 {
		return &Error{Key: "router.transaction_replay_attempts", Msg: fmt.Sprintf("%d is out of range; use 1 to 100, e.g. 5", c.Router.TransactionReplayAttempts)}
	}
	if c.Router.TransactionReplayRetryOnDeadlock && !c.Router.TransactionReplay {
		return &Error{Key: "router.transaction_replay_retry_on_deadlock", Msg: "needs the transaction's statements, which only router.transaction_replay keeps; set transaction_replay: true too, or remove this key"}
	}
	if c.Router.MaxReplicaConnections < 0 {
		return &Error{Key: "router.max_replica_connections", Msg: "must be >= 0 (0: one per replica)"}
	}
	if c.Router.PrimaryWait < 0 || c.Router.PrimaryWait > 5*time.Minute {
		return &Error{Key: "router.primary_wait", Msg: fmt.Sprintf("%v is out of range; use 0s (fail at once) up to 5m, e.g. 10s", c.Router.PrimaryWait)}
	}
	if c.Router.ClassifierCacheSize < 0 {
		return &Error{Key: "router.classifier_cache_size", Msg: "must be > 0"}
	}
	if c.Monitor.Interval < 10*time.Millisecond {
		return &Error{Key: "monitor.interval", Msg: fmt.Sprintf("%v is too short; use 10ms or more", c.Monitor.Interval)}
	}
	switch c.Monitor.Type {
	case "mariadb", "mysql", "galera":
	default:
		return &Error{Key: "monitor.type", Msg: fmt.Sprintf("unknown type %q; use mariadb (replication, MySQL too) or galera", c.Monitor.Type)}
	}
	if c.Monitor.LagHysteresis <= 0 || c.Monitor.LagHysteresis > 1 {
		return &Error{Key: "monitor.lag_hysteresis", Msg: "must be in (0, 1], e.g. 0.8"}
	}
	if db, table, ok := strings.Cut(c.Monitor.HeartbeatTable, "."); !ok || !isIdent(db) || !isIdent(table) {
		return &Error{Key: "monitor.heartbeat_table", Msg: fmt.Sprintf("%q is not database.table (letters, digits, _ and $)", c.Monitor.HeartbeatTable)}
	}
	switch {
	case (c.TLS.Cert == "") != (c.TLS.Key == ""):
		return &Error{Key: "tls.cert", Msg: "set both tls.cert and tls.key (PEM files), or neither"}
	case c.TLS.Require && c.TLS.Cert == "":
		return &Error{Key: "tls.require", Msg: "requires tls.cert and tls.key"}
	case c.TLS.MinVersion != "" && c.TLS.MinVersion != "1.2" && c.TLS.MinVersion != "1.3":
		return &Error{Key: "tls.min_version", Msg: fmt.Sprintf("unknown %q; use 1.2 or 1.3", c.TLS.MinVersion)}
	}
	if _, err := c.TLS.ClientConfig(); err != nil {
		return &Error{Key: "tls.cert", Msg: fmt.Sprintf("cannot load the certificate and key: %v", err)}
	}
	if _, err := c.TLS.BackendConfig(); err != nil {
		return &Error{Key: "tls.backend_ca", Msg: fmt.Sprintf("cannot load the CA: %v", err)}
	}
	if c.QueryDigests < -1 {
		return &Error{Key: "query_digests", Msg: "must be a number of entries, or -1 to keep none"}
	}
	if c.MaxProcs < 0 {
		return &Error{Key: "max_procs", Msg: "must be >= 0 (0 means one per CPU)"}
	}
	if d := c.SchedSlice; d != nil && *d != 0 && (*d < MinSchedSlice || *d > MaxSchedSlice) {
		return &Error{Key: "sched_slice", Msg: fmt.Sprintf("%v is outside the kernel's range: use %v to %v, or 0s for the kernel's default", *d, MinSchedSlice, MaxSchedSlice)}
	}
	if c.MaxConnections < 0 {
		return &Error{Key: "max_connections", Msg: "must be >= 0 (0 means unlimited)"}
	}
	if c.MaxUserConnections < 0 {
		return &Error{Key: "max_user_connections", Msg: "must be >= 0 (0 means unlimited)"}
	}
	for user, n := range c.UserMaxConnections {
		if n < 0 {
			return &Error{Key: "user_max_connections." + user, Msg: "must be >= 0 (0 means unlimited)"}
		}
	}
	if c.ClientIdleTimeout < 0 || c.BackendReadTimeout < 0 {
		return &Error{Key: "client_idle_timeout", Msg: "timeouts must be >= 0 (0 means none)"}
	}
	if c.MaxAllowedPacket < 1024 || c.MaxAllowedPacket > 1<<30 {
		return &Error{Key: "max_allowed_packet", Msg: "must be between 1024 and 1073741824 bytes"}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return &Error{Key: "log.level", Msg: fmt.Sprintf("unknown level %q; use debug, info, warn or error", c.Log.Level)}
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return &Error{Key: "log.format", Msg: fmt.Sprintf("unknown format %q; use text or json", c.Log.Format)}
	}
	switch c.Genlog.OnFull {
	case "spill", "drop", "block":
	default:
		return &Error{Key: "genlog.on_full", Msg: fmt.Sprintf("unknown %q; use spill, block or drop", c.Genlog.OnFull)}
	}
	switch c.Genlog.Redact {
	case "", "none", "literals":
	default:
		return &Error{Key: "genlog.redact", Msg: fmt.Sprintf("unknown %q; use literals, or leave it empty", c.Genlog.Redact)}
	}
	if c.Genlog.Sample < 0 || c.Genlog.Sample > 1 {
		return &Error{Key: "genlog.sample", Msg: fmt.Sprintf("%v is not a fraction from 0 to 1 (1 logs every query)", c.Genlog.Sample)}
	}
	if c.Genlog.QueueSize < 0 || c.Genlog.MaxQueryBytes < 0 {
		return &Error{Key: "genlog.queue_size", Msg: "queue_size and max_query_bytes must be > 0"}
	}
	if c.Genlog.Enabled && len(c.Genlog.Brokers) == 0 && !c.Broker.Enabled {
		return &Error{Key: "genlog.brokers", Msg: "empty while broker.enabled is false; list Kafka brokers or enable the bundled broker"}
	}
	if _, err := filter.NewChain(c.Filters); err != nil {
		var se *filter.SpecError
		if errors.As(err, &se) {
			return &Error{Key: fmt.Sprintf("filters[%d].%s", se.Index, se.Key), Msg: se.Msg}
		}
		return &Error{Key: "filters", Msg: err.Error()}
	}
	if c.Broker.Enabled {
		if err := c.Broker.Validate(); err != nil {
			return brokerError(err)
		}
	}
	return nil
}

// brokerError locates logbroker's "broker.key: message" errors in the file.
func brokerError(err error) error {
	msg := err.Error()
	if key, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(key, "broker.") {
		return &Error{Key: key, Msg: rest}
	}
	return &Error{Key: "broker", Msg: msg}
}

func checkAddr(key, addr string) error {
	if addr == "" {
		return &Error{Key: key, Msg: "missing; use host:port"}
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return &Error{Key: key, Msg: fmt.Sprintf("%q is not host:port", addr)}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return &Error{Key: key, Msg: fmt.Sprintf("port %q in %q is not a number from 0 to 65535", port, addr)}
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

// lineOf finds the line of a dotted key ("servers[1].address") in the YAML
// tree, or of its nearest existing parent; 0 when unknown.
func lineOf(root *yaml.Node, key string) int {
	if root == nil || len(root.Content) == 0 {
		return 0
	}
	node := root.Content[0]
	line := 0
	for _, part := range strings.Split(key, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i > 0 && strings.HasSuffix(part, "]") {
			name = part[:i]
			idx, _ = strconv.Atoi(part[i+1 : len(part)-1])
		}
		next := mappingValue(node, name)
		if next == nil {
			return line
		}
		line = next.Line
		if idx >= 0 {
			if next.Kind != yaml.SequenceNode || idx >= len(next.Content) {
				return line
			}
			next = next.Content[idx]
			line = next.Line
		}
		node = next
	}
	return line
}

func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
