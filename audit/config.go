package audit

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/sluice-proxy/sluice/internal/confkey"
)

// Config is the genlog: section of sluice.yaml: what the query log records
// and where its records go. Zero values mean "use the default"; WithDefaults
// fills them in.
type Config struct {
	Enabled bool `yaml:"enabled"`
	// Topic receives the records. Default sluice.genlog.
	Topic string `yaml:"topic"`
	// Brokers are a Kafka cluster's seed brokers (any that answers gives
	// the cluster's metadata); empty: the bundled broker.
	Brokers []string `yaml:"brokers"`
	// TLS and SASL are how Sluice connects to the brokers, and how the
	// audit commands connect with --config.
	TLS  ClientTLS  `yaml:"tls"`
	SASL ClientSASL `yaml:"sasl"`
	// Compression of the batches to a Kafka cluster: none (the default),
	// gzip, snappy, lz4 or zstd.
	Compression string `yaml:"compression"`
	// MaxQueryBytes truncates logged statements; a truncated one carries
	// "query_truncated": true. Default 64 KiB.
	MaxQueryBytes int `yaml:"max_query_bytes"`
	// Redact: "" (log statements) or "literals" (log fingerprints only).
	Redact string `yaml:"redact"`
	// RedactColumns withhold the values of these columns ("table.column"
	// in any database, or "db.table.column"): a literal compared with,
	// assigned to or inserted into one, or the parameter standing there,
	// is logged as '<redacted>'.
	RedactColumns []string `yaml:"redact_columns"`
	// RedactPatterns withhold any literal or parameter that looks like
	// one of these (RedactPatternNames: card_number, email).
	RedactPatterns []string `yaml:"redact_patterns"`
	// Include and Exclude select query records by user or database: with
	// Include set, only matching sessions are logged; Exclude wins.
	Include Select `yaml:"include"`
	Exclude Select `yaml:"exclude"`
	// Sample logs this fraction of query records (0 or 1: all). Logins,
	// connects and quits are always logged.
	Sample float64 `yaml:"sample"`
	// Params logs the parameters of prepared statements' executes.
	Params bool `yaml:"params"`
	// GTID records the GTID each committed write produced (MariaDB; one
	// more round trip per write, free when router.causal_reads reads it).
	GTID bool `yaml:"gtid"`
	// ResultChecksums records a checksum of each answer's rows
	// ("rows_checksum", RowsChecksum), for sluice replay to compare.
	ResultChecksums bool `yaml:"result_checksums"`
	// QueueSize bounds records waiting for the broker. Default 100,000.
	QueueSize int `yaml:"queue_size"`
	// OnFull: when the broker is away or slow, spill (to SpillFile,
	// replayed in order later; the default), block (the query waits) or
	// drop (counted).
	OnFull string `yaml:"on_full"`
	// SpillFile defaults to genlog.spill beside the broker's data_dir
	// (set by the config loader, which knows it); SpillMaxBytes to 1 GiB.
	SpillFile     string `yaml:"spill_file"`
	SpillMaxBytes int64  `yaml:"spill_max_bytes"`
	// SigningKey is an Ed25519 private key (PKCS#8 PEM, as openssl genpkey
	// -algorithm ed25519 writes it): the producer signs checkpoints of the
	// chains with it, written to the topic <topic>.checkpoints. Empty: no
	// checkpoints, and verify proves order only.
	SigningKey string `yaml:"signing_key"`
	// CheckpointInterval: while records flow, a checkpoint per partition
	// written to at least this often, and one at shutdown. Default 1s.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`

	// Proxy names this Sluice instance in every record (the top-level name).
	Proxy string `yaml:"-"`
}

// Select names users and databases.
type Select struct {
	Users     []string `yaml:"users"`
	Databases []string `yaml:"databases"`
}

// What genlog.on_full may say.
const (
	OnFullSpill = "spill"
	OnFullBlock = "block"
	OnFullDrop  = "drop"
)

// WithDefaults returns a copy of c with every zero value that has a
// default replaced by it.
func (c Config) WithDefaults() Config {
	if c.Topic == "" {
		c.Topic = "sluice.genlog"
	}
	if c.MaxQueryBytes == 0 {
		c.MaxQueryBytes = 64 << 10
	}
	if c.QueueSize == 0 {
		c.QueueSize = 100000
	}
	if c.OnFull == "" {
		c.OnFull = OnFullSpill
	}
	if c.SpillMaxBytes == 0 {
		c.SpillMaxBytes = 1 << 30
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = time.Second
	}
	return c
}

// Validate checks c (after WithDefaults); its errors are *confkey.Error
// naming the key within the section.
func (c *Config) Validate() error {
	switch c.OnFull {
	case OnFullSpill, OnFullDrop, OnFullBlock:
	default:
		return confkey.Errorf("on_full", "unknown %q; use spill, block or drop", c.OnFull)
	}
	switch c.Redact {
	case "", "none", "literals":
	default:
		return confkey.Errorf("redact", "unknown %q; use literals, or leave it empty", c.Redact)
	}
	for i, col := range c.RedactColumns {
		parts := strings.Split(col, ".")
		if (len(parts) != 2 && len(parts) != 3) || slices.Contains(parts, "") {
			return confkey.Errorf(fmt.Sprintf("redact_columns[%d]", i), "%q is not table.column or db.table.column", col)
		}
	}
	for i, p := range c.RedactPatterns {
		if detectors[p] == nil {
			return confkey.Errorf(fmt.Sprintf("redact_patterns[%d]", i), "unknown pattern %q; use %s", p, strings.Join(RedactPatternNames(), " or "))
		}
	}
	if c.Sample < 0 || c.Sample > 1 {
		return confkey.Errorf("sample", "%v is not a fraction from 0 to 1 (1 logs every query)", c.Sample)
	}
	if c.QueueSize < 0 || c.MaxQueryBytes < 0 {
		return confkey.Errorf("queue_size", "queue_size and max_query_bytes must be > 0")
	}
	if c.CheckpointInterval < 10*time.Millisecond {
		return confkey.Errorf("checkpoint_interval", "%v is too short; use 10ms or more, e.g. 1s", c.CheckpointInterval)
	}
	if _, err := compressionCodec(c.Compression); err != nil {
		return confkey.Errorf("compression", "%v", err)
	}
	if _, err := c.Kafka(c.Brokers); err != nil {
		return err
	}
	if c.ResultChecksums && (c.redactLiterals() || len(c.RedactColumns) > 0 || len(c.RedactPatterns) > 0) {
		return confkey.Errorf("result_checksums", "a checksum of the rows lets a reader of the trail confirm a guessed value (a card number, an e-mail) that redaction withholds: use result_checksums or redact/redact_columns/redact_patterns, not both")
	}
	if c.SigningKey != "" {
		if _, err := LoadSigningKey(c.SigningKey); err != nil {
			return confkey.Errorf("signing_key", "%v", err)
		}
	}
	return nil
}

// Kafka is how to reach brokers with genlog's TLS and SASL settings,
// reading their files; its errors are *confkey.Error naming the key.
func (c *Config) Kafka(brokers []string) (Kafka, error) {
	k, err := NewKafka(brokers, Security{TLS: c.TLS, SASL: c.SASL})
	var se *settingError
	if errors.As(err, &se) {
		return k, confkey.Errorf(se.Key, "%v", se.Err)
	}
	return k, err
}

// redactLiterals: records carry fingerprints, not statement text.
func (c *Config) redactLiterals() bool { return c.Redact == "literals" }

// wantQuery applies include, exclude and sampling to a query record.
func (c *Config) wantQuery(s *Session) bool {
	if slices.Contains(c.Exclude.Users, s.User) || slices.Contains(c.Exclude.Databases, s.DB) {
		return false
	}
	if len(c.Include.Users) > 0 && !slices.Contains(c.Include.Users, s.User) {
		return false
	}
	if len(c.Include.Databases) > 0 && !slices.Contains(c.Include.Databases, s.DB) {
		return false
	}
	return c.Sample <= 0 || c.Sample >= 1 || rand.Float64() < c.Sample
}
