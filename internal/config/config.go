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
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/filter"
	"github.com/sluice-proxy/sluice/internal/admin"
	"github.com/sluice-proxy/sluice/internal/confkey"
	"github.com/sluice-proxy/sluice/logbroker"
	"github.com/sluice-proxy/sluice/monitor"
	"github.com/sluice-proxy/sluice/proxy"
	"github.com/sluice-proxy/sluice/router"
)

// Config is the whole of sluice.yaml. A section that a package reads is
// that package's own type, with its yaml keys, defaults (WithDefaults) and
// validation (Validate): the proxy's keys at the top level (proxy.Config),
// router: (router.Config and proxy.RecoveryConfig), monitor:
// (monitor.Config), broker: (logbroker.Config), filters: (filter.Spec).
// Config holds the rest, and the defaults and checks that span sections.
type Config struct {
	// Name identifies this instance in logs and audit records (default: the host name).
	Name string `yaml:"name"`
	// Proxy is the proxy's top-level keys: listen, listen_reuseport,
	// max_connections, max_user_connections, user_max_connections,
	// client_idle_timeout, backend_read_timeout, server_version,
	// max_allowed_packet, connect_timeout, drain_timeout, accounts and
	// users_refresh_interval.
	Proxy proxy.Config `yaml:",inline"`
	// Admin is the admin interface's top-level keys: admin_listen,
	// admin_token, admin_users, admin_allow_anonymous and admin_tls.
	Admin admin.Config `yaml:",inline"`
	// QueryDigests bounds the statement shapes whose statistics are kept
	// for GET /v1/digests (least recently seen evicted). Default 1000; -1
	// keeps none.
	QueryDigests int `yaml:"query_digests"`
	// MaxProcs caps the threads running Go code (GOMAXPROCS); 0 leaves
	// Go's default, one per CPU.
	MaxProcs int `yaml:"max_procs"`
	// SchedSlice is the scheduler slice Sluice's threads ask the kernel
	// for (Linux 6.12 and later): a proxy runs in short bursts that queries
	// wait on, and a short slice lets it run sooner after a wake-up. Unset:
	// 100µs; 0s leaves the kernel's default.
	SchedSlice *time.Duration `yaml:"sched_slice"`

	// Servers are the backends; their roles are discovered by the monitor.
	Servers []monitor.ServerConfig `yaml:"servers"`
	// ServiceUser is the account the monitor and the account loader log
	// in to the servers with.
	ServiceUser monitor.Credentials `yaml:"service_user"`

	Router RouterSection `yaml:"router"`
	TLS    TLS           `yaml:"tls"`
	// Filters run in order before routing: regex rewrites, firewall refuses.
	Filters []filter.Spec    `yaml:"filters"`
	Monitor monitor.Config   `yaml:"monitor"`
	Genlog  audit.Config     `yaml:"genlog"`
	Broker  logbroker.Config `yaml:"broker"`
	Log     Log              `yaml:"log"`

	// File is the path the config was loaded from.
	File string `yaml:"-"`
}

// RouterSection is the `router:` section: the router's keys and, beside
// them (where they always were), the proxy's transaction replay and
// primary_wait keys.
type RouterSection struct {
	router.Config `yaml:",inline"`
	Recovery      proxy.RecoveryConfig `yaml:",inline"`
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
	hide(&r.Monitor.Failover.ReplicationUser.Password)
	hide(&r.Admin.Token)
	r.Admin.Users = append([]admin.User(nil), c.Admin.Users...)
	for i := range r.Admin.Users {
		hide(&r.Admin.Users[i].Token)
	}
	hide(&r.Genlog.SASL.Password)
	r.Proxy.Accounts = append([]proxy.AccountConfig(nil), c.Proxy.Accounts...)
	for i := range r.Proxy.Accounts {
		hide(&r.Proxy.Accounts[i].Password)
	}
	r.Broker.SASL.Users = append([]logbroker.SASLUser(nil), c.Broker.SASL.Users...)
	for i := range r.Broker.SASL.Users {
		hide(&r.Broker.SASL.Users[i].Password)
	}
	return &r
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

// LoadAudit reads a config for `sluice audit --config`: only genlog's
// connection settings (brokers, tls, sasl) must be valid.
func LoadAudit(file string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &Error{File: file, Msg: fmt.Sprintf("cannot read config: %v", err)}
	}
	return parse(file, data, func(c *Config) error {
		if _, err := c.Genlog.Kafka(nil); err != nil {
			return sectionError("genlog", err)
		}
		return nil
	})
}

// GenlogBrokers are the brokers the audit trail is in: genlog.brokers, or
// the bundled broker's listener; none without either.
func (c *Config) GenlogBrokers() []string {
	if len(c.Genlog.Brokers) > 0 {
		return c.Genlog.Brokers
	}
	if c.Broker.Enabled {
		if c.Broker.AdvertisedListen != "" {
			return []string{c.Broker.AdvertisedListen}
		}
		return []string{c.Broker.Listen}
	}
	return nil
}

func parse(file string, data []byte, validate func(*Config) error) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(file, nil, err)
	}
	cfg := &Config{File: file}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: file, Msg: "config is empty; see configs/sluice.yaml for every key"}
		}
		return nil, yamlError(file, &root, err)
	}
	if err := confkey.ResolveSecrets(cfg); err != nil {
		ce := sectionError("", err).(*Error)
		ce.File, ce.Line = file, lineOf(&root, ce.Key)
		return nil, ce
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
// config.Config", "line 2: cannot unmarshal !!int `5` into time.Duration")
// into one line naming the file, the line and the full key path (from
// root, the document as a tree), and for a type error the form expected.
func yamlError(file string, root *yaml.Node, err error) error {
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
	if field, ok := strings.CutPrefix(msg, "field "); ok && strings.Contains(field, " not found in type") {
		field = field[:strings.Index(field, " not found")]
		return &Error{File: file, Line: line, Key: keyAt(root, line, field, "", ""),
			Msg: "unknown key; see configs/sluice.yaml for the keys that exist"}
	}
	if what, into, ok := strings.Cut(msg, " into "); ok && strings.HasPrefix(what, "cannot unmarshal ") {
		// what is "cannot unmarshal !!str `many`": the value, when quoted.
		value := ""
		if i := strings.IndexByte(what, '`'); i >= 0 {
			value = strings.Trim(what[i:], "`")
		}
		if key := keyAt(root, line, "", what, value); key != "" {
			return &Error{File: file, Line: line, Key: key, Msg: expectedForm(into, what, value)}
		}
	}
	return &Error{File: file, Line: line, Msg: msg}
}

// expectedForm says what a key of Go type into takes, for a type error
// about value (what names its kind).
func expectedForm(into, what, value string) string {
	got := strconv.Quote(value)
	switch {
	case strings.Contains(what, "!!seq"):
		got = "a list"
	case strings.Contains(what, "!!map"):
		got = "a mapping"
	}
	switch into {
	case "time.Duration":
		return got + " is not a duration; expected a number with a unit, such as 500ms, 5s or 1m"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return got + " is not a whole number; expected one such as 4"
	case "float32", "float64":
		return got + " is not a number; expected one such as 0.5"
	case "bool":
		return got + " is not true or false"
	case "string":
		return "expected a single value, not a list or a mapping"
	}
	switch {
	case strings.HasPrefix(into, "[]"):
		return "expected a list, such as [a, b] or lines starting with -"
	case strings.HasPrefix(into, "map["), strings.Contains(into, "."):
		return "expected a mapping: key: value lines indented below it, or {key: value}"
	}
	return "cannot be read as " + into
}

// keyAt is the dotted path ("servers[0].weight") of the key on line
// named name, or (name empty) of the value on line of the kind the type
// error names (what: "cannot unmarshal !!seq", or "!!str `x`", then
// reading value); "" when none is there. The deepest match wins: in flow
// style ({a: 1, b: x}) a mapping and its keys share a line.
func keyAt(root *yaml.Node, line int, name, what, value string) string {
	if root == nil || len(root.Content) == 0 || line == 0 {
		return ""
	}
	kind := yaml.ScalarNode
	switch {
	case strings.Contains(what, "!!seq"):
		kind = yaml.SequenceNode
	case strings.Contains(what, "!!map"):
		kind = yaml.MappingNode
	}
	isValue := func(v *yaml.Node) bool {
		return name == "" && v.Line == line && v.Kind == kind && (kind != yaml.ScalarNode || value == "" || v.Value == value)
	}
	var walk func(n *yaml.Node, path string) string
	walk = func(n *yaml.Node, path string) string {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if found := walk(v, p); found != "" {
					return found
				}
				if name != "" && k.Line == line && k.Value == name || isValue(v) {
					return p
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if found := walk(c, p); found != "" {
					return found
				}
				if isValue(c) {
					return p
				}
			}
		}
		return ""
	}
	return walk(root.Content[0], "")
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
	c.Proxy = c.Proxy.WithDefaults()
	c.Router.Config = c.Router.Config.WithDefaults()
	c.Router.Recovery = c.Router.Recovery.WithDefaults()
	c.Monitor = c.Monitor.WithDefaults()
	// Spans two sections: replicas log in to a new primary as the service
	// user unless monitor.replication_user names another.
	if c.Monitor.Failover.ReplicationUser.User == "" {
		c.Monitor.Failover.ReplicationUser = c.ServiceUser
	}
	c.Broker = c.Broker.WithDefaults()
	if c.QueryDigests == 0 {
		c.QueryDigests = 1000
	}
	c.Admin = c.Admin.WithDefaults()
	if c.SchedSlice == nil {
		d := DefaultSchedSlice
		c.SchedSlice = &d
	}
	c.Genlog = c.Genlog.WithDefaults()
	c.Genlog.Proxy = c.Name
	if c.Genlog.SpillFile == "" {
		// Beside the broker's data: ./data/genlog.spill by default.
		c.Genlog.SpillFile = filepath.Join(filepath.Dir(c.Broker.DataDir), "genlog.spill")
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
}

func (c *Config) validate() error {
	if err := c.Proxy.Validate(); err != nil {
		return sectionError("", err)
	}
	if err := c.Admin.Validate(); err != nil {
		return sectionError("", err)
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
		if err := confkey.CheckAddr(key+".address", s.Address); err != nil {
			return sectionError("", err)
		}
		if s.Weight < 0 {
			return &Error{Key: key + ".weight", Msg: "must be >= 0"}
		}
	}
	if c.ServiceUser.User == "" {
		return &Error{Key: "service_user.user", Msg: "missing; Sluice needs an account to monitor the servers and load client accounts"}
	}
	if err := c.Router.Config.Validate(); err != nil {
		return sectionError("router", err)
	}
	if err := c.Router.Recovery.Validate(); err != nil {
		return sectionError("router", err)
	}
	if err := c.Monitor.Validate(); err != nil {
		return sectionError("monitor", err)
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
	if err := c.Genlog.Validate(); err != nil {
		return sectionError("genlog", err)
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

// sectionError locates an error of a section's Validate, whose key is
// relative to the section, in the file: section "router" and key "type"
// is router.type; section "" is the top level.
func sectionError(section string, err error) error {
	ke := confkey.In(section, err)
	return &Error{Key: ke.Key, Msg: ke.Msg}
}

// brokerError locates logbroker's "broker.key: message" errors in the file.
func brokerError(err error) error {
	msg := err.Error()
	if key, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(key, "broker.") {
		return &Error{Key: key, Msg: rest}
	}
	return &Error{Key: "broker", Msg: msg}
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
