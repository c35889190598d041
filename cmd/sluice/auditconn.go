package main

import (
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/internal/config"
)

// auditPasswordEnv holds the SASL password of the audit commands when no
// --sasl-password-file is given: never a flag's value, which other users
// of the host can read in the process list.
const auditPasswordEnv = "SLUICE_AUDIT_PASSWORD"

// trailFlags are how the audit commands (and replay) reach the trail: the brokers and
// topic, TLS and SASL, by flag or from a config file's genlog section.
type trailFlags struct {
	config  string
	brokers []string
	topic   string
	tls     audit.ClientTLS
	sasl    audit.ClientSASL
}

func (f *trailFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.config, "config", "", "read the brokers, topic, TLS and SASL from this file's genlog section (sluice.yaml, or a file with only genlog:); flags given override it")
	fl.StringSliceVar(&f.brokers, "brokers", []string{"127.0.0.1:9092"}, "Kafka or bundled broker addresses (any of them; the others are found)")
	fl.StringVar(&f.topic, "topic", "sluice.genlog", "audit topic")
	fl.BoolVar(&f.tls.Enabled, "tls", false, "connect with TLS, trusting the system's CAs (implied by the other --tls- flags)")
	fl.StringVar(&f.tls.CA, "tls-ca", "", "PEM file of the CA that signs the brokers' certificates")
	fl.StringVar(&f.tls.Cert, "tls-cert", "", "client certificate (PEM), for brokers that ask for one")
	fl.StringVar(&f.tls.Key, "tls-key", "", "key of --tls-cert (PEM)")
	fl.StringVar(&f.tls.ServerName, "tls-server-name", "", "name to check the brokers' certificates against (default: each broker's host)")
	fl.StringVar(&f.sasl.Mechanism, "sasl-mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	fl.StringVar(&f.sasl.User, "sasl-user", "", "SASL user")
	fl.StringVar(&f.sasl.PasswordFile, "sasl-password-file", "", "file holding the SASL password on its first line (or set "+auditPasswordEnv+")")
}

// flagOf names a genlog key ("tls.ca") by its flag.
func flagOf(key string) string {
	switch key {
	case "tls":
		return "--tls"
	case "sasl.password_file":
		return "--sasl-password-file (or " + auditPasswordEnv + ")"
	}
	return "--" + strings.NewReplacer(".", "-", "_", "-").Replace(key)
}

// kafka resolves the flags, and the config file when given.
func (f *trailFlags) kafka(c *cobra.Command) (audit.Kafka, string, error) {
	brokers, topic, sec := f.brokers, f.topic, audit.Security{TLS: f.tls, SASL: f.sasl, EnvPassword: os.Getenv(auditPasswordEnv), Keys: flagOf}
	if f.config != "" {
		cfg, err := config.LoadAudit(f.config)
		if err != nil {
			return audit.Kafka{}, "", err
		}
		set := c.Flags().Changed
		if !set("brokers") {
			if b := cfg.GenlogBrokers(); len(b) > 0 {
				brokers = b
			}
		}
		if !set("topic") {
			topic = cfg.Genlog.Topic
		}
		// Settings from the file are named by their key in it.
		tlsFromFile := !anyChanged(c, "tls", "tls-ca", "tls-cert", "tls-key", "tls-server-name")
		saslFromFile := !anyChanged(c, "sasl-mechanism", "sasl-user", "sasl-password-file")
		if tlsFromFile {
			sec.TLS = cfg.Genlog.TLS
		}
		if saslFromFile {
			sec.SASL = cfg.Genlog.SASL
		}
		sec.Keys = func(key string) string {
			if strings.HasPrefix(key, "tls") && tlsFromFile || strings.HasPrefix(key, "sasl") && saslFromFile {
				return f.config + ": genlog." + key
			}
			return flagOf(key)
		}
	}
	k, err := audit.NewKafka(brokers, sec)
	return k, topic, err
}

func anyChanged(c *cobra.Command, names ...string) bool {
	for _, n := range names {
		if c.Flags().Changed(n) {
			return true
		}
	}
	return false
}
