package logbroker

// DeleteRecords (key 21) v0-2 is served only to refuse: on an audit topic
// (broker.protected_topics) with POLICY_VIOLATION whatever the principal,
// on a topic the principal may not delete from with
// TOPIC_AUTHORIZATION_FAILED, and elsewhere with POLICY_VIOLATION too,
// since this broker moves a log's start only by retention.

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (b *Broker) handleDeleteRecords(req *kmsg.DeleteRecordsRequest, cs *connState) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		code := kerr.PolicyViolation.Code
		switch {
		case !b.can(cs, opDelete, resTopic, rt.Topic):
			code = kerr.TopicAuthorizationFailed.Code
		case b.protected[rt.Topic]:
			b.log.Warn("refused to delete records of an audit topic", "topic", rt.Topic, "principal", cs.principal)
		}
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition, sp.LowWatermark, sp.ErrorCode = rp.Partition, -1, code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
