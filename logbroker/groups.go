package logbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupState follows Kafka's classic group state machine.
type groupState int

const (
	groupEmpty groupState = iota
	groupPreparingRebalance
	groupCompletingRebalance
	groupStable
)

func (s groupState) String() string {
	return [...]string{"Empty", "PreparingRebalance", "CompletingRebalance", "Stable"}[s]
}

// Session timeout bounds, looser than Kafka's 6s minimum so that tests can
// expire members quickly.
const (
	minSessionTimeout = 100 * time.Millisecond
	maxSessionTimeout = 30 * time.Minute
	// groupTick is the resolution of session and rebalance deadlines.
	groupTick = 50 * time.Millisecond
)

type member struct {
	id               string
	clientID         string
	clientHost       string
	instanceID       *string
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	protocols        []kmsg.JoinGroupRequestProtocol
	assignment       []byte
	lastSeen         time.Time
	// joinCh is set while the member's JoinGroup waits for the rebalance
	// to complete; a member with joinCh set has rejoined this round.
	joinCh chan *kmsg.JoinGroupResponse
	// syncCh is set while a follower's SyncGroup waits for the leader.
	syncCh chan *kmsg.SyncGroupResponse
}

type topicPartition struct {
	Topic     string
	Partition int32
}

type committedOffset struct {
	Offset   int64
	Metadata *string
}

type group struct {
	name         string
	state        groupState
	generation   int32
	protocolType string
	protocol     string
	leader       string
	members      map[string]*member
	// pending are member ids handed out with MEMBER_ID_REQUIRED that have
	// not rejoined yet, with when they expire.
	pending           map[string]time.Time
	rebalanceDeadline time.Time
	offsets           map[topicPartition]committedOffset
}

// groupCoordinator runs the classic consumer group protocol for all groups.
// One mutex guards every group: group traffic is light next to produce and
// fetch, and a single lock keeps the state machine easy to reason about.
type groupCoordinator struct {
	b   *Broker
	dir string

	mu     sync.Mutex
	groups map[string]*group
}

// persistedGroup is the on-disk form of a group's committed offsets.
type persistedGroup struct {
	Group   string            `json:"group"`
	Offsets []persistedOffset `json:"offsets"`
}

type persistedOffset struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Offset    int64   `json:"offset"`
	Metadata  *string `json:"metadata,omitempty"`
}

func newGroupCoordinator(b *Broker, dir string) (*groupCoordinator, error) {
	c := &groupCoordinator{b: b, dir: dir, groups: make(map[string]*group)}
	err := readJSONFiles(dir, func(name string, data []byte) error {
		var pg persistedGroup
		if err := json.Unmarshal(data, &pg); err != nil {
			return errors.New("committed offsets file " + name + " is unreadable: " + err.Error())
		}
		g := c.group(pg.Group)
		for _, o := range pg.Offsets {
			g.offsets[topicPartition{o.Topic, o.Partition}] = committedOffset{o.Offset, o.Metadata}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// member finds a group and one of its members; either may be nil. Called
// with mu held.
func (c *groupCoordinator) member(group, id string) (*group, *member) {
	g := c.groups[group]
	if g == nil {
		return nil, nil
	}
	return g, g.members[id]
}

// group returns the named group, creating it empty. Called with mu held.
func (c *groupCoordinator) group(name string) *group {
	g := c.groups[name]
	if g == nil {
		g = &group{
			name:    name,
			members: make(map[string]*member),
			pending: make(map[string]time.Time),
			offsets: make(map[topicPartition]committedOffset),
		}
		c.groups[name] = g
	}
	return g
}

func newMemberID(clientID string) string {
	var r [16]byte
	rand.Read(r[:])
	return clientID + "-" + hex.EncodeToString(r[:])
}

// run enforces session timeouts and rebalance deadlines until ctx ends.
func (c *groupCoordinator) run(ctx context.Context) {
	t := time.NewTicker(groupTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.expire(now)
		}
	}
}

func (c *groupCoordinator) expire(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.groups {
		for id, deadline := range g.pending {
			if now.After(deadline) {
				delete(g.pending, id)
			}
		}
		expired := false
		for id, m := range g.members {
			if m.joinCh == nil && now.Sub(m.lastSeen) > m.sessionTimeout {
				c.b.log.Info("group member session expired", "group", g.name, "member", id)
				delete(g.members, id)
				expired = true
			}
		}
		if g.state == groupPreparingRebalance && !now.Before(g.rebalanceDeadline) {
			c.completeJoin(g, now)
			continue
		}
		if expired {
			c.membershipChanged(g, now)
		}
	}
}

// membershipChanged starts a rebalance after members left or expired.
func (c *groupCoordinator) membershipChanged(g *group, now time.Time) {
	switch {
	case len(g.members) == 0:
		c.abortSyncs(g)
		g.state, g.leader, g.protocol = groupEmpty, "", ""
		g.generation++
	case g.state == groupPreparingRebalance:
		c.maybeCompleteJoin(g, now)
	default:
		c.prepareRebalance(g, now)
	}
}

// prepareRebalance asks every member to rejoin (they learn it from their
// next heartbeat) and gives them until the largest rebalance timeout.
func (c *groupCoordinator) prepareRebalance(g *group, now time.Time) {
	c.abortSyncs(g)
	if g.state != groupPreparingRebalance {
		var longest time.Duration
		for _, m := range g.members {
			longest = max(longest, m.rebalanceTimeout)
		}
		g.state = groupPreparingRebalance
		g.rebalanceDeadline = now.Add(longest)
	}
	c.maybeCompleteJoin(g, now)
}

// abortSyncs fails SyncGroup calls waiting on a generation that will not
// complete.
func (c *groupCoordinator) abortSyncs(g *group) {
	for _, m := range g.members {
		if m.syncCh != nil {
			resp := kmsg.NewPtrSyncGroupResponse()
			resp.ErrorCode = kerr.RebalanceInProgress.Code
			m.syncCh <- resp
			m.syncCh = nil
		}
	}
}

func (c *groupCoordinator) maybeCompleteJoin(g *group, now time.Time) {
	for _, m := range g.members {
		if m.joinCh == nil {
			return
		}
	}
	c.completeJoin(g, now)
}

// completeJoin ends the join phase: members that did not rejoin are
// dropped, a new generation starts, and every waiting JoinGroup is answered;
// the leader gets the members' metadata to run its assignor.
func (c *groupCoordinator) completeJoin(g *group, now time.Time) {
	for id, m := range g.members {
		if m.joinCh == nil {
			c.b.log.Info("group member did not rejoin in time", "group", g.name, "member", id)
			delete(g.members, id)
		}
	}
	g.generation++
	if len(g.members) == 0 {
		g.state, g.leader, g.protocol = groupEmpty, "", ""
		return
	}
	ids := make([]string, 0, len(g.members))
	for id := range g.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if g.members[g.leader] == nil {
		g.leader = ids[0]
	}
	g.protocol = chooseProtocol(g.members[g.leader], g.members)
	g.state = groupCompletingRebalance
	for _, id := range ids {
		m := g.members[id]
		resp := kmsg.NewPtrJoinGroupResponse()
		resp.Generation = g.generation
		resp.ProtocolType = strPtr(g.protocolType)
		resp.Protocol = strPtr(g.protocol)
		resp.LeaderID = g.leader
		resp.MemberID = id
		resp.Members = []kmsg.JoinGroupResponseMember{}
		if id == g.leader {
			for _, oid := range ids {
				om := g.members[oid]
				jm := kmsg.NewJoinGroupResponseMember()
				jm.MemberID, jm.InstanceID = oid, om.instanceID
				for _, p := range om.protocols {
					if p.Name == g.protocol {
						jm.ProtocolMetadata = p.Metadata
						break
					}
				}
				resp.Members = append(resp.Members, jm)
			}
		}
		m.joinCh <- resp
		m.joinCh = nil
		m.assignment = nil
		m.lastSeen = now
	}
}

// chooseProtocol picks the leader's most preferred protocol that every
// member supports, falling back to the leader's first.
func chooseProtocol(leader *member, members map[string]*member) string {
	for _, p := range leader.protocols {
		all := true
		for _, m := range members {
			found := false
			for _, mp := range m.protocols {
				if mp.Name == p.Name {
					found = true
					break
				}
			}
			if !found {
				all = false
				break
			}
		}
		if all {
			return p.Name
		}
	}
	if len(leader.protocols) > 0 {
		return leader.protocols[0].Name
	}
	return ""
}

func (c *groupCoordinator) handleJoin(ctx context.Context, req *kmsg.JoinGroupRequest, h requestHeader) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.Generation = -1
	resp.Members = []kmsg.JoinGroupResponseMember{}
	session := time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	rebalance := time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
	if req.Version == 0 || rebalance <= 0 {
		rebalance = session
	}
	switch {
	case req.Group == "":
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp
	case session < minSessionTimeout || session > maxSessionTimeout:
		resp.ErrorCode = kerr.InvalidSessionTimeout.Code
		return resp
	case len(req.Protocols) == 0 || req.ProtocolType == "":
		resp.ErrorCode = kerr.InconsistentGroupProtocol.Code
		return resp
	}
	now := time.Now()
	c.mu.Lock()
	g := c.group(req.Group)
	if len(g.members) > 0 && req.ProtocolType != g.protocolType {
		c.mu.Unlock()
		resp.ErrorCode = kerr.InconsistentGroupProtocol.Code
		return resp
	}
	memberID := req.MemberID
	m := g.members[memberID]
	switch {
	case memberID == "" && req.Version >= 4:
		// KIP-394: hand out an id first, so that a client retrying a
		// timed-out join does not leave ghost members behind.
		id := newMemberID(clientIDOf(h))
		g.pending[id] = now.Add(session)
		c.mu.Unlock()
		resp.ErrorCode = kerr.MemberIDRequired.Code
		resp.MemberID = id
		return resp
	case memberID == "":
		memberID = newMemberID(clientIDOf(h))
	case m == nil:
		if _, ok := g.pending[memberID]; !ok {
			c.mu.Unlock()
			resp.ErrorCode = kerr.UnknownMemberID.Code
			return resp
		}
		delete(g.pending, memberID)
	}
	if m == nil {
		m = &member{id: memberID, clientID: clientIDOf(h)}
		g.members[memberID] = m
	}
	if m.joinCh != nil {
		// A duplicate join (the client gave up on the first): answer the
		// old one with an error and wait in its place.
		old := kmsg.NewPtrJoinGroupResponse()
		old.ErrorCode = kerr.RebalanceInProgress.Code
		old.Generation = -1
		m.joinCh <- old
	}
	m.instanceID = req.InstanceID
	m.sessionTimeout, m.rebalanceTimeout = session, rebalance
	m.protocols = req.Protocols
	m.lastSeen = now
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	m.joinCh = ch
	g.protocolType = req.ProtocolType
	if g.state != groupPreparingRebalance {
		c.prepareRebalance(g, now)
	} else {
		c.maybeCompleteJoin(g, now)
	}
	c.mu.Unlock()

	select {
	case r := <-ch:
		r.Version = req.Version
		return r
	case <-ctx.Done():
		resp.ErrorCode = kerr.RebalanceInProgress.Code
		return resp
	}
}

func clientIDOf(h requestHeader) string {
	if h.clientID == nil || *h.clientID == "" {
		return "member"
	}
	return *h.clientID
}

func (c *groupCoordinator) handleSync(ctx context.Context, req *kmsg.SyncGroupRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	resp.MemberAssignment = []byte{}
	c.mu.Lock()
	g, m := c.member(req.Group, req.MemberID)
	switch {
	case m == nil:
		resp.ErrorCode = kerr.UnknownMemberID.Code
	case req.Generation != g.generation:
		resp.ErrorCode = kerr.IllegalGeneration.Code
	case g.state == groupPreparingRebalance:
		resp.ErrorCode = kerr.RebalanceInProgress.Code
	case g.state == groupStable:
		resp.MemberAssignment = m.assignment
	case req.MemberID == g.leader:
		for _, a := range req.GroupAssignment {
			if om := g.members[a.MemberID]; om != nil {
				om.assignment = a.MemberAssignment
			}
		}
		g.state = groupStable
		for _, om := range g.members {
			if om.assignment == nil {
				om.assignment = []byte{}
			}
			if om.syncCh != nil {
				r := kmsg.NewPtrSyncGroupResponse()
				r.MemberAssignment = om.assignment
				om.syncCh <- r
				om.syncCh = nil
			}
		}
		resp.MemberAssignment = m.assignment
	default:
		ch := make(chan *kmsg.SyncGroupResponse, 1)
		m.syncCh = ch
		m.lastSeen = time.Now()
		c.mu.Unlock()
		select {
		case r := <-ch:
			resp.ErrorCode, resp.MemberAssignment = r.ErrorCode, r.MemberAssignment
		case <-ctx.Done():
			resp.ErrorCode = kerr.RebalanceInProgress.Code
		}
		c.mu.Lock()
	}
	if m != nil {
		m.lastSeen = time.Now()
	}
	if g != nil {
		resp.ProtocolType, resp.Protocol = strPtr(g.protocolType), strPtr(g.protocol)
	}
	c.mu.Unlock()
	if resp.MemberAssignment == nil {
		resp.MemberAssignment = []byte{}
	}
	return resp
}

func (c *groupCoordinator) handleHeartbeat(req *kmsg.HeartbeatRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	c.mu.Lock()
	defer c.mu.Unlock()
	g, m := c.member(req.Group, req.MemberID)
	switch {
	case m == nil:
		resp.ErrorCode = kerr.UnknownMemberID.Code
	case req.Generation != g.generation:
		resp.ErrorCode = kerr.IllegalGeneration.Code
	case g.state == groupPreparingRebalance:
		m.lastSeen = time.Now()
		resp.ErrorCode = kerr.RebalanceInProgress.Code
	default:
		m.lastSeen = time.Now()
	}
	return resp
}

func (c *groupCoordinator) handleLeave(req *kmsg.LeaveGroupRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	ids := []string{req.MemberID}
	if req.Version >= 3 {
		ids = ids[:0]
		for _, m := range req.Members {
			ids = append(ids, m.MemberID)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[req.Group]
	left := false
	for i, id := range ids {
		var code int16
		if g == nil || g.members[id] == nil {
			code = kerr.UnknownMemberID.Code
		} else {
			m := g.members[id]
			if m.joinCh != nil {
				r := kmsg.NewPtrJoinGroupResponse()
				r.ErrorCode, r.Generation = kerr.UnknownMemberID.Code, -1
				m.joinCh <- r
			}
			if m.syncCh != nil {
				r := kmsg.NewPtrSyncGroupResponse()
				r.ErrorCode = kerr.UnknownMemberID.Code
				m.syncCh <- r
			}
			delete(g.members, id)
			left = true
		}
		if req.Version >= 3 {
			rm := kmsg.NewLeaveGroupResponseMember()
			rm.MemberID, rm.InstanceID, rm.ErrorCode = id, req.Members[i].InstanceID, code
			resp.Members = append(resp.Members, rm)
		} else {
			resp.ErrorCode = code
		}
	}
	if left {
		c.membershipChanged(g, time.Now())
	}
	return resp
}

func (c *groupCoordinator) handleOffsetCommit(req *kmsg.OffsetCommitRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	c.mu.Lock()
	defer c.mu.Unlock()
	var code int16
	g := c.groups[req.Group]
	if req.Group == "" {
		code = kerr.InvalidGroupID.Code
	} else if req.Generation < 0 && req.MemberID == "" {
		// A commit from outside any generation (simple consumers,
		// admin tools) is only allowed while the group has no members.
		if g != nil && len(g.members) > 0 {
			code = kerr.UnknownMemberID.Code
		}
	} else {
		var m *member
		if g != nil {
			m = g.members[req.MemberID]
		}
		switch {
		case m == nil:
			code = kerr.UnknownMemberID.Code
		case req.Generation != g.generation:
			code = kerr.IllegalGeneration.Code
		case g.state == groupCompletingRebalance:
			code = kerr.RebalanceInProgress.Code
		default:
			m.lastSeen = time.Now()
		}
	}
	if code == 0 {
		g = c.group(req.Group)
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				g.offsets[topicPartition{t.Topic, p.Partition}] = committedOffset{p.Offset, p.Metadata}
			}
		}
		if err := c.persist(g); err != nil {
			c.b.log.Error("persist committed offsets", "group", g.name, "err", err)
			code = kerr.UnknownServerError.Code
		}
	}
	for _, t := range req.Topics {
		resp.Topics = append(resp.Topics, offsetCommitAnswer(t, code))
	}
	return resp
}

// offsetCommitAnswer answers every partition of a committed topic with code.
func offsetCommitAnswer(t kmsg.OffsetCommitRequestTopic, code int16) kmsg.OffsetCommitResponseTopic {
	st := kmsg.NewOffsetCommitResponseTopic()
	st.Topic = t.Topic
	for _, p := range t.Partitions {
		sp := kmsg.NewOffsetCommitResponseTopicPartition()
		sp.Partition, sp.ErrorCode = p.Partition, code
		st.Partitions = append(st.Partitions, sp)
	}
	return st
}

// persist writes the group's committed offsets atomically. Called with mu
// held.
func (c *groupCoordinator) persist(g *group) error {
	pg := persistedGroup{Group: g.name, Offsets: make([]persistedOffset, 0, len(g.offsets))}
	for tp, o := range g.offsets {
		pg.Offsets = append(pg.Offsets, persistedOffset{tp.Topic, tp.Partition, o.Offset, o.Metadata})
	}
	sort.Slice(pg.Offsets, func(i, j int) bool {
		a, b := pg.Offsets[i], pg.Offsets[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	data, err := json.Marshal(pg)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(c.dir, metaFileName(g.name)), data, c.b.cfg.Fsync != FsyncOS)
}

func (c *groupCoordinator) handleOffsetFetch(req *kmsg.OffsetFetchRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[req.Group]
	topics := req.Topics
	if topics == nil && g != nil {
		// All committed offsets of the group.
		byTopic := make(map[string][]int32)
		for tp := range g.offsets {
			byTopic[tp.Topic] = append(byTopic[tp.Topic], tp.Partition)
		}
		for t, ps := range byTopic {
			sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
			topics = append(topics, kmsg.OffsetFetchRequestTopic{Topic: t, Partitions: ps})
		}
		sort.Slice(topics, func(i, j int) bool { return topics[i].Topic < topics[j].Topic })
	}
	resp.Topics = []kmsg.OffsetFetchResponseTopic{}
	for _, t := range topics {
		st := kmsg.NewOffsetFetchResponseTopic()
		st.Topic = t.Topic
		for _, p := range t.Partitions {
			sp := kmsg.NewOffsetFetchResponseTopicPartition()
			sp.Partition, sp.Offset, sp.LeaderEpoch = p, -1, -1
			if g != nil {
				if o, ok := g.offsets[topicPartition{t.Topic, p}]; ok {
					sp.Offset, sp.Metadata = o.Offset, o.Metadata
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (c *groupCoordinator) handleDescribe(req *kmsg.DescribeGroupsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range req.Groups {
		dg := kmsg.NewDescribeGroupsResponseGroup()
		dg.Group = name
		dg.Members = []kmsg.DescribeGroupsResponseGroupMember{}
		g := c.groups[name]
		if g == nil {
			dg.State = "Dead"
			resp.Groups = append(resp.Groups, dg)
			continue
		}
		dg.State, dg.ProtocolType = g.state.String(), g.protocolType
		if g.state == groupStable {
			dg.Protocol = g.protocol
		}
		ids := make([]string, 0, len(g.members))
		for id := range g.members {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			m := g.members[id]
			dm := kmsg.NewDescribeGroupsResponseGroupMember()
			dm.MemberID, dm.InstanceID, dm.ClientID, dm.ClientHost = id, m.instanceID, m.clientID, m.clientHost
			for _, p := range m.protocols {
				if p.Name == g.protocol {
					dm.ProtocolMetadata = p.Metadata
				}
			}
			dm.MemberAssignment = m.assignment
			dg.Members = append(dg.Members, dm)
		}
		resp.Groups = append(resp.Groups, dg)
	}
	return resp
}

func (c *groupCoordinator) handleList(req *kmsg.ListGroupsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	c.mu.Lock()
	defer c.mu.Unlock()
	resp.Groups = []kmsg.ListGroupsResponseGroup{}
	names := make([]string, 0, len(c.groups))
	for name := range c.groups {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		g := c.groups[name]
		if len(req.StatesFilter) > 0 && !contains(req.StatesFilter, g.state.String()) {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState = name, g.protocolType, g.state.String()
		if lg.ProtocolType == "" {
			lg.ProtocolType = "consumer"
		}
		resp.Groups = append(resp.Groups, lg)
	}
	return resp
}
