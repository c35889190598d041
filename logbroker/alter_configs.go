package logbroker

// IncrementalAlterConfigs (key 44) v0-1: SET and DELETE of a topic's
// configs (the keys of topicConfigKeys take effect; others are kept and
// reported, as at creation). Needs alter_configs on the topic. On an audit
// topic (broker.protected_topics) the result must still pass
// protectedConfigError: no compaction, no retention below
// broker.audit_min_retention, no retention.bytes (POLICY_VIOLATION).
// Broker configs live in sluice.yaml and are not altered over the network.

import (
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (b *Broker) handleIncrementalAlterConfigs(req *kmsg.IncrementalAlterConfigsRequest, cs *connState) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		fail := func(code int16, msg string) {
			sr.ErrorCode, sr.ErrorMessage = code, strPtr(msg)
		}
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			if !b.can(cs, kmsg.ACLOperationAlterConfigs, resTopic, rr.ResourceName) {
				fail(kerr.TopicAuthorizationFailed.Code, "not authorized to alter the configs of topic "+rr.ResourceName)
				break
			}
			if code, msg := b.alterTopicConfigs(rr, req.ValidateOnly); code != 0 {
				fail(code, msg)
			}
			if sr.ErrorCode == kerr.PolicyViolation.Code {
				b.log.Warn("refused to alter an audit topic's configs", "topic", rr.ResourceName, "principal", cs.principal)
			}
		case kmsg.ConfigResourceTypeBroker:
			if !b.can(cs, kmsg.ACLOperationAlterConfigs, resCluster, "") {
				fail(kerr.ClusterAuthorizationFailed.Code, "not authorized to alter broker configs")
				break
			}
			fail(kerr.InvalidRequest.Code, "broker configs are set in sluice.yaml (broker:), not over the network")
		default:
			fail(kerr.InvalidRequest.Code, "only topic configs can be altered")
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

// alterTopicConfigs applies one resource's SET and DELETE operations,
// persisting the topic's new configs before they take effect. It returns
// an error code and message, or 0.
func (b *Broker) alterTopicConfigs(rr kmsg.IncrementalAlterConfigsRequestResource, validateOnly bool) (int16, string) {
	b.topicsMu.Lock()
	defer b.topicsMu.Unlock()
	t := b.topics[rr.ResourceName]
	if t == nil {
		return kerr.UnknownTopicOrPartition.Code, "unknown topic " + rr.ResourceName
	}
	configs := maps.Clone(t.configs)
	if configs == nil {
		configs = make(map[string]string)
	}
	for _, c := range rr.Configs {
		switch c.Op {
		case kmsg.IncrementalAlterConfigOpSet:
			if c.Value == nil {
				return kerr.InvalidConfig.Code, c.Name + ": SET without a value"
			}
			configs[c.Name] = *c.Value
		case kmsg.IncrementalAlterConfigOpDelete:
			delete(configs, c.Name)
		default:
			return kerr.InvalidConfig.Code, fmt.Sprintf("%s: only SET and DELETE are supported, not %s", c.Name, c.Op)
		}
	}
	settings, err := resolveSettings(b.cfg, configs)
	if err != nil {
		return kerr.InvalidConfig.Code, err.Error()
	}
	if b.protected[t.name] {
		if err := protectedConfigError(b.cfg, t.name, configs); err != nil {
			return kerr.PolicyViolation.Code, err.Error()
		}
		settings = protectSettings(b.cfg, settings)
	}
	if validateOnly {
		return 0, ""
	}
	data, _ := json.Marshal(topicMeta{Name: t.name, Partitions: len(t.partitions), Configs: configs})
	if err := writeFileAtomic(filepath.Join(b.metaDir, "topics", metaFileName(t.name)), data, b.cfg.Fsync != FsyncOS); err != nil {
		return kerr.KafkaStorageError.Code, err.Error()
	}
	t.configs = configs
	t.current.Store(&settings)
	b.log.Info("altered topic configs", "topic", t.name)
	return 0, ""
}
