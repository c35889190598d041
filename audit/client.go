package audit

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluice-proxy/sluice/internal/confkey"
)

// ClientTLS is genlog.tls: TLS to the Kafka brokers. It is on when any key
// is set; enabled alone trusts the system's CAs.
type ClientTLS struct {
	Enabled bool `yaml:"enabled"`
	// CA is a PEM file of the CAs that sign the brokers' certificates.
	CA string `yaml:"ca"`
	// Cert and Key are a client certificate, for brokers that ask for one.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ServerName is checked against the brokers' certificates instead of
	// the host of each broker's address.
	ServerName string `yaml:"server_name"`
}

// ClientSASL is genlog.sasl: how Sluice authenticates to the brokers.
type ClientSASL struct {
	// Mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL.
	Mechanism string `yaml:"mechanism"`
	User      string `yaml:"user"`
	// Password, or better PasswordFile (one line, read at start), or
	// ${VAR} in Password (confkey.ResolveSecrets).
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// The SASL mechanisms a client of the trail may use.
var saslMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

// settingError is a bad TLS or SASL setting, by its key under genlog
// ("tls.ca", "sasl.password_file"); the config names it with confkey, the
// audit commands by their flag.
type settingError struct {
	Key string
	Err error
}

func (e *settingError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *settingError) Unwrap() error { return e.Err }

func badSetting(key, format string, args ...any) error {
	return &settingError{Key: key, Err: fmt.Errorf(format, args...)}
}

// on reports whether TLS is wanted.
func (t ClientTLS) on() bool {
	return t.Enabled || t.CA != "" || t.Cert != "" || t.Key != "" || t.ServerName != ""
}

// load makes the tls.Config; nil when TLS is off.
func (t ClientTLS) load() (*tls.Config, error) {
	if !t.on() {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, badSetting("tls.ca", "%v", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, badSetting("tls.ca", "%s holds no PEM certificate", t.CA)
		}
	}
	switch {
	case t.Cert != "" && t.Key != "":
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, badSetting("tls.cert", "%s with key %s: %v", t.Cert, t.Key, err)
		}
		c.Certificates = []tls.Certificate{cert}
	case t.Cert != "":
		return nil, badSetting("tls.key", "tls.cert %s needs its key: set tls.key", t.Cert)
	case t.Key != "":
		return nil, badSetting("tls.cert", "tls.key %s needs its certificate: set tls.cert", t.Key)
	}
	return c, nil
}

// Config is the tls.Config of these settings, nil when TLS is off. Its
// errors name a setting by keys (given its key here, "tls.ca"), for
// callers whose settings are flags: the audit commands and sluice ctl.
func (t ClientTLS) Config(keys func(string) string) (*tls.Config, error) {
	c, err := t.load()
	return c, Kafka{keys: keys}.named(err)
}

// normalMechanism is the mechanism's name as Kafka spells it.
func normalMechanism(m string) string { return strings.ToUpper(strings.TrimSpace(m)) }

// load makes the SASL mechanism, reading the password file; nil when SASL
// is off. envPassword, when not empty, is the password from the
// environment (the audit commands' SLUICE_AUDIT_PASSWORD).
func (s ClientSASL) load(envPassword string) (sasl.Mechanism, error) {
	mech := normalMechanism(s.Mechanism)
	if mech == "" {
		if s.User != "" || s.Password != "" || s.PasswordFile != "" {
			return nil, badSetting("sasl.mechanism", "missing: use %s", strings.Join(saslMechanisms, ", "))
		}
		return nil, nil
	}
	if !slices.Contains(saslMechanisms, mech) {
		return nil, badSetting("sasl.mechanism", "unknown %q; use %s", s.Mechanism, strings.Join(saslMechanisms, ", "))
	}
	if s.User == "" {
		return nil, badSetting("sasl.user", "missing: the user %s authenticates as", mech)
	}
	if s.Password == "" && s.PasswordFile != "" {
		// The audit commands' file; sluice.yaml's was read at load
		// (confkey.ResolveSecrets, which also expands ${VAR}).
		if err := confkey.ResolveSecrets(&s); err != nil {
			var ke *confkey.Error
			if errors.As(err, &ke) {
				return nil, badSetting("sasl."+ke.Key, "%s", ke.Msg)
			}
			return nil, err
		}
	}
	pass := cmp.Or(s.Password, envPassword)
	if pass == "" {
		return nil, badSetting("sasl.password_file", "missing: the password of %q, in a file (password_file) or in password", s.User)
	}
	switch mech {
	case "PLAIN":
		return plain.Auth{User: s.User, Pass: pass}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: s.User, Pass: pass}.AsSha256Mechanism(), nil
	default:
		return scram.Auth{User: s.User, Pass: pass}.AsSha512Mechanism(), nil
	}
}

// Kafka is how a client of the trail reaches its brokers: the bundled
// broker's listener or a Kafka cluster, with TLS and SASL when set.
type Kafka struct {
	Brokers []string
	TLS     *tls.Config
	SASL    sasl.Mechanism
	// user and mechanism name what authenticates, for errors.
	user, mechanism string
	// keys names the settings in errors: the config's genlog keys, or the
	// audit commands' flags.
	keys func(key string) string
}

// Security is genlog's TLS and SASL settings, and the audit commands'.
type Security struct {
	TLS  ClientTLS
	SASL ClientSASL
	// EnvPassword is the SASL password from the environment, used when
	// neither password nor password_file is set.
	EnvPassword string
	// Keys names a setting (by its key under genlog: "tls.ca") in errors;
	// nil: "genlog.<key>".
	Keys func(key string) string
}

// NewKafka reads the CA, certificates and password files of sec. Its
// errors name the setting (by sec.Keys); without Keys they are
// *settingError, for the config to place.
func NewKafka(brokers []string, sec Security) (Kafka, error) {
	k := Kafka{Brokers: brokers, keys: sec.Keys}
	var err error
	if k.TLS, err = sec.TLS.load(); err != nil {
		return k, k.named(err)
	}
	if k.SASL, err = sec.SASL.load(sec.EnvPassword); err != nil {
		return k, k.named(err)
	}
	k.user, k.mechanism = sec.SASL.User, normalMechanism(sec.SASL.Mechanism)
	return k, nil
}

// PlainKafka reaches brokers without TLS or SASL.
func PlainKafka(brokers ...string) Kafka { return Kafka{Brokers: brokers} }

// named renames a settingError's key by k.keys.
func (k Kafka) named(err error) error {
	var se *settingError
	if k.keys != nil && errors.As(err, &se) {
		return fmt.Errorf("%s: %w", k.keys(se.Key), se.Err)
	}
	return err
}

func (k Kafka) key(key string) string {
	if k.keys != nil {
		return k.keys(key)
	}
	return "genlog." + key
}

// connWatch remembers, per broker address, why the last connection to it
// failed or which broker SASL last ran with, so that errors name the
// broker.
type connWatch struct {
	mu     sync.Mutex
	failed map[string]error
	saslTo string
	// saslCut is a broker that cut the connection during the SASL
	// exchange, as some do on a wrong password instead of answering
	// SASL_AUTHENTICATION_FAILED.
	saslCut string
}

var (
	_ kgo.HookBrokerConnect = (*connWatch)(nil)
	_ kgo.HookBrokerE2E     = (*connWatch)(nil)
)

func (w *connWatch) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	addr := net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port)))
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.failed[addr] = err
	} else {
		delete(w.failed, addr)
	}
}

func (w *connWatch) OnBrokerE2E(meta kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	if key == 17 || key == 36 { // SaslHandshake, SaslAuthenticate
		addr := net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port)))
		w.mu.Lock()
		w.saslTo = addr
		switch {
		case e2e.Err() != nil:
			w.saslCut = addr
		case w.saslCut == addr:
			w.saslCut = "" // authenticated since
		}
		w.mu.Unlock()
	}
}

// opts are the kgo options that reach k's brokers, with w watching the
// connections.
func (k Kafka) opts(w *connWatch) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(k.Brokers...),
		kgo.DialTimeout(5 * time.Second),
		kgo.WithHooks(w),
		// A request that keeps failing (no broker answers, a refused
		// password) gives up after 10s, as a write does, rather than
		// kgo's default 30s.
		kgo.RetryTimeout(10 * time.Second),
	}
	if k.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(k.TLS.Clone()))
	}
	if k.SASL != nil {
		opts = append(opts, kgo.SASL(k.SASL))
	}
	return opts
}

// client connects a kgo client to k's brokers; its errors go through
// explain.
func (k Kafka) client(extra ...kgo.Opt) (*kgo.Client, *connWatch, error) {
	if len(k.Brokers) == 0 {
		return nil, nil, errors.New("no brokers: pass --brokers host:port, or set genlog.brokers")
	}
	w := &connWatch{failed: map[string]error{}}
	cl, err := kgo.NewClient(append(k.opts(w), extra...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("kafka client for %s: %w", strings.Join(k.Brokers, ","), err)
	}
	return cl, w, nil
}

// explain makes a client's error say which broker failed and what to fix:
// a refused password, an untrusted certificate, TLS against a plaintext
// port, or no broker answering. The password is never part of it.
func (k Kafka) explain(w *connWatch, err error) error {
	if err == nil {
		return nil
	}
	brokers := strings.Join(k.Brokers, ", ")
	var saslTo, saslCut string
	if w != nil {
		w.mu.Lock()
		saslTo, saslCut = w.saslTo, w.saslCut
		w.mu.Unlock()
	}
	if errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.UnsupportedSaslMechanism) || errors.Is(err, kerr.IllegalSaslState) {
		return fmt.Errorf("broker %s refused SASL %s authentication of user %q: check %s and the password in %s (%w)",
			cmp.Or(saslTo, brokers), k.mechanism, k.user, k.key("sasl.user"), k.key("sasl.password_file"), err)
	}
	if saslCut != "" && k.SASL != nil {
		return fmt.Errorf("broker %s closed the connection during SASL %s authentication of user %q: the password or the user is wrong, "+
			"or the broker does not enable %s: check %s and the password in %s (%w)",
			saslCut, k.mechanism, k.user, k.mechanism, k.key("sasl.user"), k.key("sasl.password_file"), err)
	}
	if w != nil {
		w.mu.Lock()
		var addrs []string
		for a := range w.failed {
			addrs = append(addrs, a)
		}
		slices.Sort(addrs)
		for _, a := range addrs {
			if e := k.explainConnect(a, w.failed[a]); e != nil {
				w.mu.Unlock()
				if strings.Contains(e.Error(), err.Error()) {
					return e
				}
				return fmt.Errorf("%w (then: %v)", e, err)
			}
		}
		w.mu.Unlock()
	}
	if e := k.explainConnect(brokers, err); e != nil {
		return e
	}
	return err
}

// explainConnect says what to fix for a failed connection to addr, or nil
// when it is not a TLS problem.
func (k Kafka) explainConnect(addr string, err error) error {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var recordHeader tls.RecordHeaderError
	switch {
	case errors.As(err, &unknownCA):
		if k.TLS != nil && k.TLS.RootCAs == nil {
			return fmt.Errorf("broker %s: its TLS certificate is not signed by a CA this system trusts: set %s to the CA that signs the brokers' certificates: %w", addr, k.key("tls.ca"), err)
		}
		return fmt.Errorf("broker %s: its TLS certificate is not signed by the CA in %s: set %s to the CA that signs the brokers' certificates: %w", addr, k.key("tls.ca"), k.key("tls.ca"), err)
	case errors.As(err, &hostname):
		return fmt.Errorf("broker %s: its TLS certificate is not for this name: set %s to a name the certificate holds: %w", addr, k.key("tls.server_name"), err)
	case errors.As(err, &invalid):
		return fmt.Errorf("broker %s: its TLS certificate is not valid: %w", addr, err)
	case errors.As(err, &recordHeader):
		return fmt.Errorf("broker %s does not speak TLS on this port: remove %s, or use the brokers' TLS port: %w", addr, k.key("tls"), err)
	case k.TLS == nil && errors.As(err, new(*kgo.ErrFirstReadEOF)):
		return fmt.Errorf("broker %s closed the connection at once: if it wants TLS, set %s: %w", addr, k.key("tls.ca"), err)
	}
	return nil
}
