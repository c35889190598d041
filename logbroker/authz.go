package logbroker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Operations checked by the handlers.
const (
	opRead            = kmsg.ACLOperationRead
	opWrite           = kmsg.ACLOperationWrite
	opCreate          = kmsg.ACLOperationCreate
	opDelete          = kmsg.ACLOperationDelete
	opDescribe        = kmsg.ACLOperationDescribe
	opDescribeConfigs = kmsg.ACLOperationDescribeConfigs
)

// can reports whether the connection's principal may do op on the named
// resource (always, when authorization is off).
func (b *Broker) can(cs *connState, op aclOp, kind resourceKind, name string) bool {
	return b.authz.allowed(cs.principal, op, kind, name)
}

// denyGroup answers a group membership request (JoinGroup, SyncGroup,
// Heartbeat, LeaveGroup) with GROUP_AUTHORIZATION_FAILED when the
// principal may not read the group, and returns nil when it may.
func (b *Broker) denyGroup(cs *connState, req kmsg.Request, group string) kmsg.Response {
	if b.can(cs, opRead, resGroup, group) {
		return nil
	}
	code := kerr.GroupAuthorizationFailed.Code
	switch resp := req.ResponseKind().(type) {
	case *kmsg.JoinGroupResponse:
		resp.ErrorCode, resp.Generation = code, -1
		resp.Members = []kmsg.JoinGroupResponseMember{}
		return resp
	case *kmsg.SyncGroupResponse:
		resp.ErrorCode = code
		resp.MemberAssignment = []byte{}
		return resp
	case *kmsg.HeartbeatResponse:
		resp.ErrorCode = code
		return resp
	case *kmsg.LeaveGroupResponse:
		resp.ErrorCode = code
		return resp
	}
	panic("denyGroup: not a group membership request")
}

// handleOffsetCommit commits only what the principal may: reading the
// group, and each topic (GROUP_AUTHORIZATION_FAILED or
// TOPIC_AUTHORIZATION_FAILED for the rest, as Kafka answers).
func (b *Broker) handleOffsetCommit(req *kmsg.OffsetCommitRequest, cs *connState) kmsg.Response {
	groupOK := b.can(cs, opRead, resGroup, req.Group)
	var allowed, denied []kmsg.OffsetCommitRequestTopic
	for _, t := range req.Topics {
		if groupOK && b.can(cs, opRead, resTopic, t.Topic) {
			allowed = append(allowed, t)
		} else {
			denied = append(denied, t)
		}
	}
	var resp *kmsg.OffsetCommitResponse
	if len(allowed) > 0 || len(denied) == 0 {
		all := req.Topics
		req.Topics = allowed
		resp = b.groups.handleOffsetCommit(req).(*kmsg.OffsetCommitResponse)
		req.Topics = all
	} else {
		resp = req.ResponseKind().(*kmsg.OffsetCommitResponse)
	}
	code := kerr.TopicAuthorizationFailed.Code
	if !groupOK {
		code = kerr.GroupAuthorizationFailed.Code
	}
	for _, t := range denied {
		resp.Topics = append(resp.Topics, offsetCommitAnswer(t, code))
	}
	return resp
}

// handleOffsetFetch answers GROUP_AUTHORIZATION_FAILED to a principal that
// may not describe the group and hides the topics it may not describe.
func (b *Broker) handleOffsetFetch(req *kmsg.OffsetFetchRequest, cs *connState) kmsg.Response {
	if !b.can(cs, opDescribe, resGroup, req.Group) {
		resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		resp.Topics = []kmsg.OffsetFetchResponseTopic{}
		for _, t := range req.Topics { // v0-1 have no top-level error code
			st := kmsg.NewOffsetFetchResponseTopic()
			st.Topic = t.Topic
			for _, p := range t.Partitions {
				sp := kmsg.NewOffsetFetchResponseTopicPartition()
				sp.Partition, sp.Offset, sp.LeaderEpoch, sp.ErrorCode = p, -1, -1, kerr.GroupAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp
	}
	resp := b.groups.handleOffsetFetch(req).(*kmsg.OffsetFetchResponse)
	kept := resp.Topics[:0]
	for _, t := range resp.Topics {
		if b.can(cs, opDescribe, resTopic, t.Topic) {
			kept = append(kept, t)
			continue
		}
		if req.Topics == nil {
			continue // all of the group's offsets: leave the topic out
		}
		for i := range t.Partitions {
			t.Partitions[i].Offset, t.Partitions[i].Metadata = -1, nil
			t.Partitions[i].ErrorCode = kerr.TopicAuthorizationFailed.Code
		}
		kept = append(kept, t)
	}
	resp.Topics = kept
	return resp
}

// filterDescribeGroups refuses the groups the principal may not describe.
func (b *Broker) filterDescribeGroups(resp *kmsg.DescribeGroupsResponse, cs *connState) kmsg.Response {
	for i := range resp.Groups {
		g := &resp.Groups[i]
		if name := g.Group; !b.can(cs, opDescribe, resGroup, name) {
			*g = kmsg.NewDescribeGroupsResponseGroup()
			g.Group = name
			g.ErrorCode = kerr.GroupAuthorizationFailed.Code
			g.Members = []kmsg.DescribeGroupsResponseGroupMember{}
		}
	}
	return resp
}

// filterListGroups leaves out the groups the principal may not describe.
func (b *Broker) filterListGroups(resp *kmsg.ListGroupsResponse, cs *connState) kmsg.Response {
	kept := resp.Groups[:0]
	for _, g := range resp.Groups {
		if b.can(cs, opDescribe, resGroup, g.Group) {
			kept = append(kept, g)
		}
	}
	resp.Groups = kept
	return resp
}
