package logbroker

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The audit topics (broker.protected_topics) are append-only for every
// client, whatever its ACLs: DeleteTopics answers TOPIC_DELETION_DISABLED,
// DeleteRecords POLICY_VIOLATION, and a CreateTopics of one with
// cleanup.policy=compact, a retention.ms below broker.audit_min_retention
// or a retention.bytes answers POLICY_VIOLATION, and so does an
// IncrementalAlterConfigs leaving it so. Whatever configs such a topic has
// on disk or inherits from broker.retention, its effective retention is at
// least audit_min_retention and it is never compacted (protectSettings).
// Retention still deletes segments older than that.

// errAuditPolicy marks a refusal that protects an audit topic.
var errAuditPolicy = errors.New("audit topics are append-only")

// auditRefusal is the message of a refused change to audit topic name.
func auditRefusal(name, what string) string {
	return fmt.Sprintf("topic %s is an audit topic (broker.protected_topics) and cannot be %s: the audit trail is append-only", name, what)
}

// protectedConfigError checks the configs a client asks for a protected
// topic.
func protectedConfigError(cfg Config, name string, configs map[string]string) error {
	for k, v := range configs {
		switch k {
		case "cleanup.policy":
			if strings.Contains(v, "compact") {
				return fmt.Errorf("%w: %s", errAuditPolicy, auditRefusal(name, "compacted (cleanup.policy="+v+")"))
			}
		case "retention.ms":
			n, err := strconv.ParseInt(v, 10, 64)
			if err == nil && n != -1 && time.Duration(n)*time.Millisecond < cfg.AuditMinRetention {
				return fmt.Errorf("%w: %s", errAuditPolicy, auditRefusal(name, fmt.Sprintf("kept for less than broker.audit_min_retention (%s; asked retention.ms=%s)", cfg.AuditMinRetention, v)))
			}
		case "retention.bytes":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
				return fmt.Errorf("%w: %s", errAuditPolicy, auditRefusal(name, "cut by size (retention.bytes="+v+")"))
			}
		}
	}
	return nil
}

// protectSettings is what a protected topic's settings become: at least
// audit_min_retention, never compacted.
func protectSettings(cfg Config, s topicSettings) topicSettings {
	if s.retention > 0 && s.retention < cfg.AuditMinRetention {
		s.retention = cfg.AuditMinRetention
	}
	s.compact = false
	return s
}
