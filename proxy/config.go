package proxy

import (
	"crypto/tls"
	"fmt"
	"slices"
	"time"

	"github.com/sluice-proxy/sluice/internal/confkey"
)

// Config is the proxy's part of sluice.yaml: the top-level keys of the
// client listener, the sessions and the client accounts. Zero values mean
// "use the default"; WithDefaults fills them in. The fields tagged
// `yaml:"-"` come from other sections and are set by the wiring.
type Config struct {
	// Name identifies this Sluice instance (the top-level name).
	Name string `yaml:"-"`
	// Listen is the client listener's host:port; ListenReusePort sets
	// SO_REUSEPORT on it so several Sluice instances can share one port
	// (the kernel spreads connections).
	Listen          string `yaml:"listen"`
	ListenReusePort bool   `yaml:"listen_reuseport"`
	// ServerVersion, when set, replaces the primary's version in handshakes.
	ServerVersion string `yaml:"server_version"`
	// MaxConnections caps concurrent client sessions; 0: unlimited.
	MaxConnections int `yaml:"max_connections"`
	// MaxUserConnections caps each user's sessions (error 1203, as MySQL's
	// max_user_connections); UserMaxConnections overrides it per user.
	// 0: unlimited.
	MaxUserConnections int            `yaml:"max_user_connections"`
	UserMaxConnections map[string]int `yaml:"user_max_connections"`
	// ClientIdleTimeout closes sessions idle this long between commands
	// (MySQL's wait_timeout); 0: never.
	ClientIdleTimeout time.Duration `yaml:"client_idle_timeout"`
	// BackendReadTimeout bounds one command's answer from a server before
	// the client gets an error and that connection is closed; 0: no bound.
	BackendReadTimeout time.Duration `yaml:"backend_read_timeout"`
	// MaxAllowedPacket is the largest client command accepted. Default 64 MiB.
	MaxAllowedPacket int `yaml:"max_allowed_packet"`
	// ConnectTimeout bounds dialing and logging in to a backend. Default 5s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// DrainTimeout bounds how long a shutdown waits for sessions to
	// finish (Shutdown's deadline). Default 30s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// Accounts are client accounts known from the config rather than
	// loaded from the servers, for setups where the service user cannot
	// read mysql.user (see ConfigAccounts).
	Accounts []AccountConfig `yaml:"accounts"`
	// UsersRefreshInterval throttles reloading accounts from the servers
	// after an unknown user or a failed password check. Default 30s.
	UsersRefreshInterval time.Duration `yaml:"users_refresh_interval"`
	// ProxyProtocolNetworks are the balancers (CIDRs or addresses) whose
	// connections start with a PROXY protocol header naming the client
	// (proxyprotocol.go): required from them, refused from anyone else.
	ProxyProtocolNetworks []string `yaml:"proxy_protocol_networks"`
	// ProxyProtocolServers are the servers (by name) whose session
	// connections start with a PROXY v2 header naming the client (each
	// server's proxy_protocol key).
	ProxyProtocolServers map[string]bool `yaml:"-"`
	// Auth is how clients authenticate (the auth: section).
	Auth AuthConfig `yaml:"auth"`
	// Pool is how sessions share connections to the servers (the pool:
	// section).
	Pool PoolConfig `yaml:"pool"`

	// ClassifierCacheSize bounds the statement shapes whose class is
	// cached (router.classifier_cache_size).
	ClassifierCacheSize int `yaml:"-"`
	// TLS, when set, is offered to clients; RequireTLS refuses clients
	// that do not use it (the tls: section).
	TLS        *tls.Config `yaml:"-"`
	RequireTLS bool        `yaml:"-"`
	// BackendTLS, when set, is used on every backend connection; a server
	// that does not offer TLS is refused (the tls: section).
	BackendTLS *tls.Config `yaml:"-"`
	// Recovery is what a session does when a server is lost under it (its
	// keys are in the router: section).
	Recovery RecoveryConfig `yaml:"-"`
}

// AuthConfig is the auth: section: the authentication plugins Sluice
// speaks with clients, and what it does to log in to servers as accounts
// whose plugin needs the password (authplugin.go, README "Authentication").
type AuthConfig struct {
	// Plugins are the client-side plugins accepted, in order of
	// preference: the handshake offers the first that a 20-byte scramble
	// serves, and each account is moved to its own plugin if listed,
	// else to caching_sha2_password if that is.
	// Default [mysql_native_password, caching_sha2_password, client_ed25519].
	Plugins []string `yaml:"plugins"`
	// PasswordCacheTTL is how long a password learned from a full
	// authentication is kept (in memory only) to log in to the servers
	// and for caching_sha2_password's fast path. Default 8h.
	PasswordCacheTTL time.Duration `yaml:"password_cache_ttl"`
	// RSAPrivateKey and RSAPublicKey are PEM files (as tls.key and
	// tls.cert are): with them a caching_sha2_password client without TLS
	// sends its password RSA-encrypted; without them it must use TLS.
	RSAPrivateKey string `yaml:"rsa_private_key"`
	RSAPublicKey  string `yaml:"rsa_public_key"`
}

// Pool modes: when a session's server connection goes back to the pool.
const (
	// PoolOff: a session keeps its connections from login to quit.
	PoolOff = "off"
	// PoolMultiplex: after each statement, when nothing lives only on the
	// connection (ProxySQL's multiplexing).
	PoolMultiplex = "multiplex"
	// PoolIdle: after pool.idle_time without a command, when nothing lives
	// only on the connection (MaxScale's idle_session_pool_time).
	PoolIdle = "idle"
)

// PoolConfig is the pool: section: connections to the servers shared by
// sessions of the same user (pool.go).
type PoolConfig struct {
	// Mode is off, multiplex or idle. Default off.
	Mode string `yaml:"mode"`
	// MaxServerConnections bounds the connections to each server, all users
	// together, with pooling on. Default 100, under MariaDB's default
	// max_connections of 151 with room for the monitor and operators.
	MaxServerConnections int `yaml:"max_server_connections"`
	// WaitTimeout bounds how long a statement waits for a connection when
	// a server's are all in use; then it fails naming the pool. Default 10s.
	WaitTimeout time.Duration `yaml:"wait_timeout"`
	// IdleTimeout closes a pooled connection nobody used this long.
	// Default 60s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// IdleTime is how long a session waits without a command before its
	// connections go back to the pool, in idle mode. Default 1s.
	IdleTime time.Duration `yaml:"idle_time"`
}

// Pooled reports whether sessions share connections.
func (c *PoolConfig) Pooled() bool { return c.Mode == PoolMultiplex || c.Mode == PoolIdle }

// WithDefaults returns a copy of c with every zero value that has a
// default replaced by it.
func (c PoolConfig) WithDefaults() PoolConfig {
	if c.Mode == "" {
		c.Mode = PoolOff
	}
	if c.MaxServerConnections == 0 {
		c.MaxServerConnections = 100
	}
	if c.WaitTimeout == 0 {
		c.WaitTimeout = 10 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.IdleTime == 0 {
		c.IdleTime = time.Second
	}
	return c
}

// Validate checks c (after WithDefaults); its errors name the key within
// the pool section.
func (c *PoolConfig) Validate() error {
	switch c.Mode {
	case PoolOff, PoolMultiplex, PoolIdle:
	default:
		return confkey.Errorf("mode", "unknown mode %q; use off, multiplex or idle", c.Mode)
	}
	if c.MaxServerConnections < 1 || c.MaxServerConnections > 100000 {
		return confkey.Errorf("max_server_connections", "%d is out of range; use 1 to 100000, under each server's max_connections, e.g. 100", c.MaxServerConnections)
	}
	if c.WaitTimeout < 0 || c.IdleTimeout < 0 || c.IdleTime < 0 {
		return confkey.Errorf("wait_timeout", "durations must be > 0, e.g. wait_timeout: 10s, idle_timeout: 60s, idle_time: 1s")
	}
	return nil
}

// AccountConfig is a client account declared in the config.
type AccountConfig struct {
	User string `yaml:"user"`
	// Host is the client host pattern, as in mysql.user. Default %.
	Host string `yaml:"host"`
	// Password, or PasswordFile holding it, or ${VAR} (confkey.ResolveSecrets).
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// WithDefaults returns a copy of c with every zero value that has a
// default replaced by it.
func (c Config) WithDefaults() Config {
	if c.MaxAllowedPacket == 0 {
		c.MaxAllowedPacket = 64 << 20
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.UsersRefreshInterval == 0 {
		c.UsersRefreshInterval = 30 * time.Second
	}
	if len(c.Auth.Plugins) == 0 {
		c.Auth.Plugins = DefaultAuthPlugins
	}
	c.Auth.Plugins = slices.Clone(c.Auth.Plugins)
	if c.Auth.PasswordCacheTTL == 0 {
		c.Auth.PasswordCacheTTL = 8 * time.Hour
	}
	c.Pool = c.Pool.WithDefaults()
	if c.Accounts != nil {
		c.Accounts = append([]AccountConfig(nil), c.Accounts...)
		for i := range c.Accounts {
			if c.Accounts[i].Host == "" {
				c.Accounts[i].Host = "%"
			}
		}
	}
	return c
}

// Validate checks c (after WithDefaults); its errors are *confkey.Error
// naming the key.
func (c *Config) Validate() error {
	if c.Listen == "" {
		return confkey.Errorf("listen", "missing; set the client listener address, e.g. listen: 127.0.0.1:4006")
	}
	if err := confkey.CheckAddr("listen", c.Listen); err != nil {
		return err
	}
	for i, a := range c.Accounts {
		if a.User == "" {
			return confkey.Errorf(fmt.Sprintf("accounts[%d].user", i), "missing")
		}
	}
	if c.MaxConnections < 0 {
		return confkey.Errorf("max_connections", "must be >= 0 (0 means unlimited)")
	}
	if c.MaxUserConnections < 0 {
		return confkey.Errorf("max_user_connections", "must be >= 0 (0 means unlimited)")
	}
	for user, n := range c.UserMaxConnections {
		if n < 0 {
			return confkey.Errorf("user_max_connections."+user, "must be >= 0 (0 means unlimited)")
		}
	}
	if c.ClientIdleTimeout < 0 || c.BackendReadTimeout < 0 {
		return confkey.Errorf("client_idle_timeout", "timeouts must be >= 0 (0 means none)")
	}
	for i, n := range c.ProxyProtocolNetworks {
		if _, err := parseNetwork(n); err != nil {
			return confkey.Errorf(fmt.Sprintf("proxy_protocol_networks[%d]", i), "%v; list the balancers that send PROXY headers, e.g. [10.0.0.0/24, 10.0.1.7]", err)
		}
	}
	if err := c.Auth.Validate(); err != nil {
		return confkey.In("auth", err)
	}
	if err := c.Pool.Validate(); err != nil {
		return confkey.In("pool", err)
	}
	if c.MaxAllowedPacket < 1024 || c.MaxAllowedPacket > 1<<30 {
		return confkey.Errorf("max_allowed_packet", "must be between 1024 and 1073741824 bytes")
	}
	return nil
}

// Validate checks c (after WithDefaults); its errors name the key within
// the auth section.
func (c *AuthConfig) Validate() error {
	for i, p := range c.Plugins {
		if !slices.Contains(knownAuthPlugins, p) {
			return confkey.Errorf(fmt.Sprintf("plugins[%d]", i), "unknown plugin %q; use mysql_native_password, caching_sha2_password or client_ed25519", p)
		}
	}
	if c.PasswordCacheTTL < 0 {
		return confkey.Errorf("password_cache_ttl", "must be > 0, e.g. 8h")
	}
	if (c.RSAPrivateKey == "") != (c.RSAPublicKey == "") {
		return confkey.Errorf("rsa_private_key", "set both rsa_private_key and rsa_public_key (PEM files), or neither")
	}
	if c.RSAPrivateKey != "" {
		if _, err := c.LoadRSAKeys(); err != nil {
			return confkey.Errorf("rsa_private_key", "%v", err)
		}
	}
	return nil
}

// ConfigAccounts are the accounts of the accounts: key, for
// Accounts.SetConfigAccounts.
func (c *Config) ConfigAccounts() []Account {
	out := make([]Account, 0, len(c.Accounts))
	for _, a := range c.Accounts {
		out = append(out, NewConfigAccount(a.User, a.Host, a.Password))
	}
	return out
}

// RecoveryConfig is how a session recovers when its server is lost. Its
// keys are in the `router:` section of sluice.yaml (where they always
// were), though only the proxy reads them.
type RecoveryConfig struct {
	// TransactionReplay: a transaction whose primary is lost is replayed on
	// the next one, and goes on if every statement answers as before
	// (MaxScale's transaction_replay). TransactionReplayMaxSize bounds the
	// statement text kept per session (bytes; default 1 MiB).
	TransactionReplay        bool `yaml:"transaction_replay"`
	TransactionReplayMaxSize int  `yaml:"transaction_replay_max_size"`
	// TransactionReplayRetryOnDeadlock: a statement answered with a
	// deadlock (1213: the server rolled the transaction back) is not
	// relayed; the transaction is replayed on the same connection and the
	// statement runs again, up to TransactionReplayAttempts times (default
	// 5; MaxScale's transaction_replay_retry_on_deadlock and
	// transaction_replay_attempts).
	TransactionReplayRetryOnDeadlock bool `yaml:"transaction_replay_retry_on_deadlock"`
	TransactionReplayAttempts        int  `yaml:"transaction_replay_attempts"`
	// PrimaryWait is how long a statement for the primary waits for one
	// to be known and to accept connections (a failover under way); 0
	// does not wait. MaxScale's delayed_retry, ProxySQL's wait for a writer.
	PrimaryWait time.Duration `yaml:"primary_wait"`
}

// WithDefaults returns a copy of c with every zero value that has a
// default replaced by it.
func (c RecoveryConfig) WithDefaults() RecoveryConfig {
	if c.TransactionReplayMaxSize == 0 {
		c.TransactionReplayMaxSize = 1 << 20
	}
	if c.TransactionReplayAttempts == 0 {
		c.TransactionReplayAttempts = 5
	}
	return c
}

// Validate checks c (after WithDefaults); its errors are *confkey.Error
// naming the key within the router section.
func (c *RecoveryConfig) Validate() error {
	if c.TransactionReplayMaxSize < 0 || c.TransactionReplayMaxSize > 64<<20 {
		return confkey.Errorf("transaction_replay_max_size", "%d is out of range; use 1 to 67108864 bytes, e.g. 1048576", c.TransactionReplayMaxSize)
	}
	if c.TransactionReplayAttempts < 0 || c.TransactionReplayAttempts > 100 {
		return confkey.Errorf("transaction_replay_attempts", "%d is out of range; use 1 to 100, e.g. 5", c.TransactionReplayAttempts)
	}
	if c.TransactionReplayRetryOnDeadlock && !c.TransactionReplay {
		return confkey.Errorf("transaction_replay_retry_on_deadlock", "needs the transaction's statements, which only router.transaction_replay keeps; set transaction_replay: true too, or remove this key")
	}
	if c.PrimaryWait < 0 || c.PrimaryWait > 5*time.Minute {
		return confkey.Errorf("primary_wait", "%v is out of range; use 0s (fail at once) up to 5m, e.g. 10s", c.PrimaryWait)
	}
	return nil
}
