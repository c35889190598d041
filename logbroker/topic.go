package logbroker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
)

// metaDirName holds the broker's own state inside data_dir. It cannot be
// mistaken for a partition directory, which always ends in -<number>.
const metaDirName = "__sluice_meta"

// topicSettings are a topic's effective log settings: the broker defaults
// overridden by the topic's configs.
type topicSettings struct {
	retention      time.Duration
	retentionBytes int64
	segmentBytes   int64
	segmentAge     time.Duration
	compact        bool
}

// topic is a named set of partitions.
type topic struct {
	name       string
	log        *slog.Logger
	configs    map[string]string // as given to CreateTopics or altered since; replaced (never changed) under the broker's topicsMu
	current    atomic.Pointer[topicSettings]
	partitions []*partition
}

func (t *topic) settings() topicSettings { return *t.current.Load() }

// topicConfigKeys are the per-topic configs the broker understands.
var topicConfigKeys = []string{"cleanup.policy", "retention.ms", "retention.bytes", "segment.bytes", "segment.ms"}

// resolveSettings applies topic configs over the broker defaults.
func resolveSettings(cfg Config, configs map[string]string) (topicSettings, error) {
	s := topicSettings{
		retention:      cfg.Retention,
		retentionBytes: cfg.RetentionBytes,
		segmentBytes:   cfg.SegmentBytes,
		segmentAge:     cfg.SegmentAge,
	}
	for k, v := range configs {
		switch k {
		case "cleanup.policy":
			switch v {
			case "delete":
			case "compact", "compact,delete", "delete,compact":
				s.compact = true
			default:
				return s, fmt.Errorf("cleanup.policy: unknown value %q", v)
			}
		case "retention.ms", "segment.ms":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || (n < 0 && !(k == "retention.ms" && n == -1)) {
				return s, fmt.Errorf("%s: invalid value %q", k, v)
			}
			d := time.Duration(n) * time.Millisecond
			if k == "retention.ms" {
				if n == -1 {
					d = 0 // keep forever
				}
				s.retention = d
			} else {
				s.segmentAge = d
			}
		case "retention.bytes", "segment.bytes":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || (k == "segment.bytes" && (n < 1024 || n > 1<<31-1)) || (k == "retention.bytes" && n < -1) {
				return s, fmt.Errorf("%s: invalid value %q", k, v)
			}
			if k == "retention.bytes" {
				if n < 0 {
					n = 0
				}
				s.retentionBytes = n
			} else {
				s.segmentBytes = n
			}
		default:
			// Unknown configs are kept and reported but have no effect,
			// so that tools setting e.g. min.insync.replicas still work.
		}
	}
	if s.segmentAge <= 0 {
		s.segmentAge = cfg.SegmentAge
	}
	return s, nil
}

// validTopicName follows Kafka's rule: 1-249 of [a-zA-Z0-9._-], not "." or "..".
func validTopicName(name string) bool {
	if name == "" || len(name) > 249 || name == "." || name == ".." {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// metaFileName maps an arbitrary name to a safe file name.
func metaFileName(name string) string {
	if len(name) <= 100 {
		return hex.EncodeToString([]byte(name)) + ".json"
	}
	sum := sha256.Sum256([]byte(name))
	return "h" + hex.EncodeToString(sum[:]) + ".json"
}

// topicMeta is the persisted description of a topic.
type topicMeta struct {
	Name       string            `json:"name"`
	Partitions int               `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
}

// writeFileAtomic replaces path with data so that a crash leaves either the
// old or the new content.
func writeFileAtomic(path string, data []byte, durable bool) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if durable {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if durable {
		syncDir(filepath.Dir(path))
	}
	return nil
}

func readTopicMetas(dir string) (map[string]topicMeta, error) {
	out := make(map[string]topicMeta)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	err := readJSONFiles(dir, func(name string, data []byte) error {
		var m topicMeta
		if err := json.Unmarshal(data, &m); err != nil || !validTopicName(m.Name) {
			return fmt.Errorf("topic metadata %s is unreadable: %v", name, err)
		}
		out[m.Name] = m
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// readJSONFiles calls read with the name and contents of each .json file in
// dir, stopping at the first error.
func readJSONFiles(dir string, read func(name string, data []byte) error) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".json" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		if err := read(e.Name(), data); err != nil {
			return err
		}
	}
	return nil
}
