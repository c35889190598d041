package logbroker

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// dispatch handles a decoded request. A nil response with a nil error means
// the client expects no answer. Authorization (authz.go) happens here for
// requests refused whole and inside the handlers for those refused per
// topic.
func (b *Broker) dispatch(ctx context.Context, req kmsg.Request, h requestHeader, cs *connState) (*pendingResponse, error) {
	var resp kmsg.Response
	switch req := req.(type) {
	case *kmsg.ApiVersionsRequest:
		resp = b.apiVersionsResponse(req.Version)
	case *kmsg.SASLHandshakeRequest:
		resp = b.handleSASLHandshake(cs, req)
	case *kmsg.SASLAuthenticateRequest:
		return b.handleSASLAuthenticate(cs, req), nil
	case *kmsg.MetadataRequest:
		resp = b.handleMetadata(req, cs)
	case *kmsg.ProduceRequest:
		return b.handleProduce(req, cs)
	case *kmsg.FetchRequest:
		resp = b.handleFetch(ctx, req, cs)
	case *kmsg.ListOffsetsRequest:
		resp = b.handleListOffsets(req, cs)
	case *kmsg.FindCoordinatorRequest:
		resp = b.handleFindCoordinator(req, cs)
	case *kmsg.JoinGroupRequest:
		if resp = b.denyGroup(cs, req, req.Group); resp == nil {
			resp = b.groups.handleJoin(ctx, req, h)
		}
	case *kmsg.SyncGroupRequest:
		if resp = b.denyGroup(cs, req, req.Group); resp == nil {
			resp = b.groups.handleSync(ctx, req)
		}
	case *kmsg.HeartbeatRequest:
		if resp = b.denyGroup(cs, req, req.Group); resp == nil {
			resp = b.groups.handleHeartbeat(req)
		}
	case *kmsg.LeaveGroupRequest:
		if resp = b.denyGroup(cs, req, req.Group); resp == nil {
			resp = b.groups.handleLeave(req)
		}
	case *kmsg.OffsetCommitRequest:
		resp = b.handleOffsetCommit(req, cs)
	case *kmsg.OffsetFetchRequest:
		resp = b.handleOffsetFetch(req, cs)
	case *kmsg.DescribeGroupsRequest:
		resp = b.filterDescribeGroups(b.groups.handleDescribe(req).(*kmsg.DescribeGroupsResponse), cs)
	case *kmsg.ListGroupsRequest:
		resp = b.filterListGroups(b.groups.handleList(req).(*kmsg.ListGroupsResponse), cs)
	case *kmsg.CreateTopicsRequest:
		resp = b.handleCreateTopics(req, cs)
	case *kmsg.DeleteTopicsRequest:
		resp = b.handleDeleteTopics(req, cs)
	case *kmsg.DeleteRecordsRequest:
		resp = b.handleDeleteRecords(req, cs)
	case *kmsg.DescribeConfigsRequest:
		resp = b.handleDescribeConfigs(req, cs)
	case *kmsg.IncrementalAlterConfigsRequest:
		resp = b.handleIncrementalAlterConfigs(req, cs)
	case *kmsg.InitProducerIDRequest:
		resp = b.handleInitProducerID(req, cs)
	case *kmsg.DescribeACLsRequest:
		resp = b.handleDescribeACLs(req, cs)
	default:
		return nil, errCloseConn{"no handler for " + kmsg.NameForKey(req.Key())}
	}
	return &pendingResponse{resp: resp}, nil
}

func (b *Broker) apiVersionsResponse(version int16) *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(version)
	keys := make([]int16, 0, len(supportedAPIs))
	for k := range supportedAPIs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, k := range keys {
		ak := kmsg.NewApiVersionsResponseApiKey()
		ak.ApiKey, ak.MinVersion, ak.MaxVersion = k, supportedAPIs[k].min, supportedAPIs[k].max
		resp.ApiKeys = append(resp.ApiKeys, ak)
	}
	return resp
}

func strPtr(s string) *string { return &s }

func (b *Broker) handleMetadata(req *kmsg.MetadataRequest, cs *connState) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	host, port := b.advertisedHostPort()
	br := kmsg.NewMetadataResponseBroker()
	br.NodeID, br.Host, br.Port = b.cfg.NodeID, host, port
	resp.Brokers = []kmsg.MetadataResponseBroker{br}
	resp.ClusterID = strPtr("sluice")
	resp.ControllerID = b.cfg.NodeID

	var names []string
	all := req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0)
	if all {
		// Topics the client may not describe are left out, as Kafka does.
		for _, name := range b.topicNames() {
			if b.can(cs, opDescribe, resTopic, name) {
				names = append(names, name)
			}
		}
	}
	for _, rt := range req.Topics {
		if rt.Topic != nil {
			names = append(names, *rt.Topic)
		}
	}
	for _, name := range names {
		mt := kmsg.NewMetadataResponseTopic()
		mt.Topic = strPtr(name)
		if !validTopicName(name) {
			mt.ErrorCode = kerr.InvalidTopicException.Code
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		// Auto-created topics exist before we answer: some clients treat
		// LEADER_NOT_AVAILABLE as fatal. The broker's auto_create_topics
		// decides, not the request's allow_auto_topic_creation: franz-go
		// clients send false by default, and a producer only produces to
		// topics that metadata reported.
		if !b.can(cs, opDescribe, resTopic, name) {
			mt.ErrorCode = kerr.TopicAuthorizationFailed.Code
			mt.Partitions = []kmsg.MetadataResponseTopicPartition{}
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		t, err := b.topic(name, !all && b.can(cs, opCreate, resTopic, name))
		switch {
		case err != nil:
			b.log.Error("auto-create topic", "topic", name, "err", err)
			mt.ErrorCode = kerr.KafkaStorageError.Code
		case t == nil:
			mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
		default:
			for _, p := range t.partitions {
				mp := kmsg.NewMetadataResponseTopicPartition()
				mp.Partition = p.id
				mp.Leader = b.cfg.NodeID
				mp.LeaderEpoch = 0
				mp.Replicas = []int32{b.cfg.NodeID}
				mp.ISR = []int32{b.cfg.NodeID}
				mp.OfflineReplicas = []int32{}
				mt.Partitions = append(mt.Partitions, mp)
			}
		}
		if mt.Partitions == nil {
			mt.Partitions = []kmsg.MetadataResponseTopicPartition{}
		}
		resp.Topics = append(resp.Topics, mt)
	}
	if resp.Topics == nil {
		resp.Topics = []kmsg.MetadataResponseTopic{}
	}
	return resp
}

// handleProduce appends every partition's batches. The response is queued
// with the fsync round that must complete before it may be sent.
func (b *Broker) handleProduce(req *kmsg.ProduceRequest, cs *connState) (*pendingResponse, error) {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	var round *syncRound
	now := time.Now()
	badAcks := req.Acks != 0 && req.Acks != 1 && req.Acks != -1
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		var t *topic
		var terr error
		denied := !b.can(cs, opWrite, resTopic, rt.Topic)
		if !badAcks && !denied {
			t, terr = b.topic(rt.Topic, b.can(cs, opCreate, resTopic, rt.Topic))
		}
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset, sp.LogAppendTime, sp.LogStartOffset = -1, -1, -1
			switch {
			case badAcks:
				sp.ErrorCode = kerr.InvalidRequiredAcks.Code
			case denied:
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case terr != nil:
				sp.ErrorCode = kerr.KafkaStorageError.Code
			default:
				res := b.appendRecords(t, rp.Partition, rp.Records, now)
				sp.ErrorCode = res.code
				if res.code == 0 {
					sp.BaseOffset = res.base
					sp.LogStartOffset = res.logStart
				}
				if res.round != nil {
					// Rounds are flushed in order, so the latest covers the rest.
					round = res.round
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	if req.Acks == 0 {
		return nil, nil
	}
	pr := &pendingResponse{resp: resp}
	if round != nil {
		pr.round = round
		pr.onSyncErr = func(error) {
			for i := range resp.Topics {
				for j := range resp.Topics[i].Partitions {
					if resp.Topics[i].Partitions[j].ErrorCode == 0 {
						resp.Topics[i].Partitions[j].ErrorCode = kerr.KafkaStorageError.Code
					}
				}
			}
		}
	}
	return pr, nil
}

// appendRecords is the one append path, of Produce requests and of Append:
// it checks that t (nil when the topic does not exist) has the partition,
// splits records into RecordBatch v2 batches and validates them, appends
// them, and counts the produced records when all went in. The result's
// code is UNKNOWN_TOPIC_OR_PARTITION, CORRUPT_MESSAGE, or the partition's
// (see partition.append); its round is set whenever a batch was stored,
// even if a later one failed, and is what the fsync policy makes the
// caller wait for.
func (b *Broker) appendRecords(t *topic, partition int32, records []byte, now time.Time) appendResult {
	if t == nil || partition < 0 || int(partition) >= len(t.partitions) {
		return appendResult{base: -1, logStart: -1, code: kerr.UnknownTopicOrPartition.Code}
	}
	batches, headers, err := splitBatches(records)
	if err != nil || len(batches) == 0 {
		return appendResult{base: -1, logStart: -1, code: kerr.CorruptMessage.Code}
	}
	res := t.partitions[partition].append(batches, headers, now)
	if res.code == 0 {
		var n int64
		for _, h := range headers {
			n += max(int64(h.NumRecords), 0)
		}
		b.counters.producedRecords.Add(uint64(n))
	}
	return res
}

// fetchTarget is one requested partition resolved to its log.
type fetchTarget struct {
	topicIdx, partIdx int
	p                 *partition
	offset            int64
	maxBytes          int32
}

// handleFetch serves stored batches as they are on disk. When fewer than
// MinBytes are available it waits, up to MaxWaitMillis, for an append to
// any requested partition.
func (b *Broker) handleFetch(ctx context.Context, req *kmsg.FetchRequest, cs *connState) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	resp.SessionID = 0 // sessions unsupported: clients send full requests
	var targets []fetchTarget
	hasErrors := false
	for ti, rt := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic = rt.Topic
		b.topicsMu.RLock()
		t := b.topics[rt.Topic]
		b.topicsMu.RUnlock()
		denied := !b.can(cs, opRead, resTopic, rt.Topic)
		for pi, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
			sp.PreferredReadReplica = -1
			sp.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
			sp.RecordBatches = []byte{}
			if denied {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				hasErrors = true
			} else if t == nil || rp.Partition < 0 || int(rp.Partition) >= len(t.partitions) {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				hasErrors = true
			} else {
				targets = append(targets, fetchTarget{ti, pi, t.partitions[rp.Partition], rp.FetchOffset, rp.PartitionMaxBytes})
			}
			st.Partitions = append(st.Partitions, sp)
		}
		if st.Partitions == nil {
			st.Partitions = []kmsg.FetchResponseTopicPartition{}
		}
		resp.Topics = append(resp.Topics, st)
	}
	if resp.Topics == nil {
		resp.Topics = []kmsg.FetchResponseTopic{}
	}
	maxBytes := req.MaxBytes
	if maxBytes <= 0 || maxBytes > b.cfg.MaxFetchBytes {
		maxBytes = b.cfg.MaxFetchBytes
	}
	wait := time.Duration(req.MaxWaitMillis) * time.Millisecond
	var wake chan struct{}
	var timer *time.Timer
	for {
		total, errs := b.fillFetch(resp, targets, maxBytes)
		if total >= int(req.MinBytes) || wait <= 0 || errs || hasErrors || len(targets) == 0 {
			break
		}
		if wake == nil {
			// Register, then read once more, so that an append between
			// the read above and the registration is not missed.
			wake = make(chan struct{}, 1)
			for _, ft := range targets {
				ft.p.addWaiter(wake)
				defer ft.p.removeWaiter(wake)
			}
			timer = time.NewTimer(wait)
			defer timer.Stop()
			continue
		}
		select {
		case <-wake:
			continue
		case <-timer.C:
		case <-ctx.Done():
		}
		b.fillFetch(resp, targets, maxBytes)
		break
	}
	var sent int
	for _, ft := range targets {
		sent += len(resp.Topics[ft.topicIdx].Partitions[ft.partIdx].RecordBatches)
	}
	b.counters.fetchedBytes.Add(uint64(sent))
	return resp
}

// fillFetch reads every target into resp and returns the bytes gathered and
// whether any partition reported an error.
func (b *Broker) fillFetch(resp *kmsg.FetchResponse, targets []fetchTarget, maxBytes int32) (int, bool) {
	total := 0
	errs := false
	for _, ft := range targets {
		sp := &resp.Topics[ft.topicIdx].Partitions[ft.partIdx]
		limit := ft.maxBytes
		if remaining := maxBytes - int32(total); remaining < limit {
			limit = remaining
		}
		// Only the first partition with data may exceed the limits, by
		// one batch (KIP-74), so that a consumer always makes progress.
		res := ft.p.read(ft.offset, limit, total == 0)
		sp.ErrorCode = res.code
		sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = res.hw, res.hw, res.logStart
		sp.RecordBatches = res.data
		if sp.RecordBatches == nil {
			sp.RecordBatches = []byte{}
		}
		if res.code != 0 {
			errs = true
		}
		total += len(res.data)
	}
	return total, errs
}

func (b *Broker) handleListOffsets(req *kmsg.ListOffsetsRequest, cs *connState) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp, sp.Offset, sp.LeaderEpoch = -1, -1, 0
			if !b.can(cs, opDescribe, resTopic, rt.Topic) {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			p := b.partition(rt.Topic, rp.Partition)
			if p == nil {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			stats := p.stats()
			switch rp.Timestamp {
			case -1: // latest
				sp.Offset = stats.HighWatermark
			case -2: // earliest
				sp.Offset = stats.LogStartOffset
			default:
				off, ts, err := p.offsetForTime(rp.Timestamp)
				if err != nil {
					sp.ErrorCode = kerr.KafkaStorageError.Code
				}
				sp.Offset, sp.Timestamp = off, ts
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (b *Broker) handleFindCoordinator(req *kmsg.FindCoordinatorRequest, cs *connState) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	if req.CoordinatorType == 0 && !b.can(cs, opDescribe, resGroup, req.CoordinatorKey) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		resp.NodeID = -1
		return resp
	}
	if req.CoordinatorType != 0 {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		resp.ErrorMessage = strPtr("transactions are not supported")
		resp.NodeID = -1
		return resp
	}
	host, port := b.advertisedHostPort()
	resp.NodeID, resp.Host, resp.Port = b.cfg.NodeID, host, port
	return resp
}

func (b *Broker) handleCreateTopics(req *kmsg.CreateTopicsRequest, cs *connState) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		st.NumPartitions, st.ReplicationFactor = -1, -1
		fail := func(code int16, msg string) {
			st.ErrorCode = code
			st.ErrorMessage = strPtr(msg)
		}
		partitions := int(rt.NumPartitions)
		if len(rt.ReplicaAssignment) > 0 {
			partitions = len(rt.ReplicaAssignment)
		} else if partitions == -1 {
			partitions = b.cfg.Partitions
		}
		configs := make(map[string]string)
		for _, c := range rt.Configs {
			if c.Value != nil {
				configs[c.Name] = *c.Value
			}
		}
		_, cfgErr := resolveSettings(b.cfg, configs)
		if cfgErr == nil && b.protected[rt.Topic] {
			cfgErr = protectedConfigError(b.cfg, rt.Topic, configs)
		}
		b.topicsMu.RLock()
		exists := b.topics[rt.Topic] != nil
		b.topicsMu.RUnlock()
		switch {
		case !b.can(cs, opCreate, resTopic, rt.Topic):
			fail(kerr.TopicAuthorizationFailed.Code, "not authorized to create topic "+rt.Topic)
		case !validTopicName(rt.Topic):
			fail(kerr.InvalidTopicException.Code, "topic names are 1-249 characters of [a-zA-Z0-9._-]")
		case exists:
			fail(kerr.TopicAlreadyExists.Code, "topic "+rt.Topic+" already exists")
		case partitions < 1 || partitions > 10000:
			fail(kerr.InvalidPartitions.Code, "partitions must be between 1 and 10000")
		case rt.ReplicationFactor != -1 && rt.ReplicationFactor != 1:
			fail(kerr.InvalidReplicationFactor.Code, "this broker is a single node: replication factor must be 1")
		case cfgErr != nil && errors.Is(cfgErr, errAuditPolicy):
			fail(kerr.PolicyViolation.Code, cfgErr.Error())
		case cfgErr != nil:
			fail(kerr.InvalidConfig.Code, cfgErr.Error())
		case req.ValidateOnly:
		default:
			if len(configs) == 0 {
				configs = nil
			}
			if _, err := b.createTopic(rt.Topic, partitions, configs); err != nil {
				if errors.Is(err, errTopicExists) {
					fail(kerr.TopicAlreadyExists.Code, err.Error())
				} else {
					fail(kerr.KafkaStorageError.Code, err.Error())
				}
			}
		}
		if st.ErrorCode == 0 {
			st.NumPartitions, st.ReplicationFactor = int32(partitions), 1
			for _, c := range b.topicConfigEntries(configs) {
				tc := kmsg.NewCreateTopicsResponseTopicConfig()
				tc.Name, tc.Value, tc.Source = c.Name, c.Value, int8(c.Source)
				st.Configs = append(st.Configs, tc)
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (b *Broker) handleDeleteTopics(req *kmsg.DeleteTopicsRequest, cs *connState) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	for _, name := range req.TopicNames {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic = strPtr(name)
		switch {
		case !b.can(cs, opDelete, resTopic, name):
			st.ErrorCode = kerr.TopicAuthorizationFailed.Code
		case b.protected[name]:
			st.ErrorCode = kerr.TopicDeletionDisabled.Code
			st.ErrorMessage = strPtr(auditRefusal(name, "deleted"))
			b.log.Warn("refused to delete an audit topic", "topic", name, "principal", cs.principal)
		case !b.deleteTopic(name):
			st.ErrorCode = kerr.UnknownTopicOrPartition.Code
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// topicConfigEntries describes a topic's effective configs.
func (b *Broker) topicConfigEntries(configs map[string]string) []kmsg.DescribeConfigsResponseResourceConfig {
	defaults := map[string]string{
		"cleanup.policy":  "delete",
		"retention.ms":    strconv.FormatInt(b.cfg.Retention.Milliseconds(), 10),
		"retention.bytes": "-1",
		"segment.bytes":   strconv.FormatInt(b.cfg.SegmentBytes, 10),
		"segment.ms":      strconv.FormatInt(b.cfg.SegmentAge.Milliseconds(), 10),
	}
	if b.cfg.RetentionBytes > 0 {
		defaults["retention.bytes"] = strconv.FormatInt(b.cfg.RetentionBytes, 10)
	}
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, name := range topicConfigKeys {
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name = name
		if v, ok := configs[name]; ok {
			c.Value, c.Source = strPtr(v), kmsg.ConfigSourceDynamicTopicConfig
		} else {
			c.Value, c.Source, c.IsDefault = strPtr(defaults[name]), kmsg.ConfigSourceDefaultConfig, true
		}
		out = append(out, c)
	}
	return out
}

func (b *Broker) handleDescribeConfigs(req *kmsg.DescribeConfigsRequest, cs *connState) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		sr.Configs = []kmsg.DescribeConfigsResponseResourceConfig{}
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			if !b.can(cs, opDescribeConfigs, resTopic, rr.ResourceName) {
				sr.ErrorCode = kerr.TopicAuthorizationFailed.Code
				break
			}
			b.topicsMu.RLock()
			t := b.topics[rr.ResourceName]
			var configs map[string]string
			if t != nil {
				configs = t.configs // replaced, never changed, under topicsMu
			}
			b.topicsMu.RUnlock()
			if t == nil {
				sr.ErrorCode = kerr.UnknownTopicOrPartition.Code
				break
			}
			for _, c := range b.topicConfigEntries(configs) {
				if rr.ConfigNames == nil || contains(rr.ConfigNames, c.Name) {
					sr.Configs = append(sr.Configs, c)
				}
			}
		case kmsg.ConfigResourceTypeBroker:
			// No broker configs are exposed.
			if !b.can(cs, opDescribeConfigs, resCluster, "") {
				sr.ErrorCode = kerr.ClusterAuthorizationFailed.Code
			}
		default:
			sr.ErrorCode = kerr.InvalidRequest.Code
			sr.ErrorMessage = strPtr("only topic and broker resources are supported")
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// handleInitProducerID gives idempotent producers a fresh id. Transactions
// are not supported.
func (b *Broker) handleInitProducerID(req *kmsg.InitProducerIDRequest, cs *connState) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if req.TransactionalID == nil && !b.authz.allowedAnyTopic(cs.principal, opWrite) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp
	}
	if req.TransactionalID != nil {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp
	}
	id, err := b.pids.allocate()
	if err != nil {
		b.log.Error("allocate producer id", "err", err)
		resp.ErrorCode = kerr.KafkaStorageError.Code
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return resp
}
