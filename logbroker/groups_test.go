package logbroker

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupClient drives the coordinator directly, as one member would.
type groupClient struct {
	t        *testing.T
	c        *groupCoordinator
	id       string
	gen      int32
	clientID string
}

func (m *groupClient) join(ctx context.Context) *kmsg.JoinGroupResponse {
	req := kmsg.NewPtrJoinGroupRequest()
	req.SetVersion(5)
	req.Group, req.MemberID, req.ProtocolType = "g", m.id, "consumer"
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 400, 2000
	req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte("meta-" + m.clientID)}}
	cid := m.clientID
	resp := m.c.handleJoin(ctx, req, requestHeader{clientID: &cid}).(*kmsg.JoinGroupResponse)
	if resp.ErrorCode == kerr.MemberIDRequired.Code {
		m.id = resp.MemberID
		return m.join(ctx)
	}
	if resp.ErrorCode != 0 {
		m.t.Fatalf("%s join: error %d", m.clientID, resp.ErrorCode)
	}
	m.id, m.gen = resp.MemberID, resp.Generation
	return resp
}

func (m *groupClient) sync(ctx context.Context, assignments map[string]string) []byte {
	req := kmsg.NewPtrSyncGroupRequest()
	req.SetVersion(3)
	req.Group, req.MemberID, req.Generation = "g", m.id, m.gen
	for id, a := range assignments {
		req.GroupAssignment = append(req.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: []byte(a)})
	}
	resp := m.c.handleSync(ctx, req).(*kmsg.SyncGroupResponse)
	if resp.ErrorCode != 0 {
		m.t.Fatalf("%s sync: error %d", m.clientID, resp.ErrorCode)
	}
	return resp.MemberAssignment
}

func (m *groupClient) heartbeat() int16 {
	req := kmsg.NewPtrHeartbeatRequest()
	req.Group, req.MemberID, req.Generation = "g", m.id, m.gen
	return m.c.handleHeartbeat(req).(*kmsg.HeartbeatResponse).ErrorCode
}

// TestGroupRebalanceAndSessionExpiry walks the classic protocol: a second
// member triggers a rebalance that waits for the first to rejoin; the
// leader's assignment reaches the follower; a member that stops
// heartbeating is expired and the survivor rebalances alone.
func TestGroupRebalanceAndSessionExpiry(t *testing.T) {
	tb := startBroker(t, Config{}, "")
	c := tb.groups
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	a := &groupClient{t: t, c: c, clientID: "a"}
	resp := a.join(ctx)
	if resp.Generation != 1 || resp.LeaderID != a.id || len(resp.Members) != 1 {
		t.Fatalf("first join: %+v", resp)
	}
	if got := string(a.sync(ctx, map[string]string{a.id: "all"})); got != "all" {
		t.Fatalf("leader assignment %q", got)
	}

	// B joins: its JoinGroup waits until A rejoins.
	b := &groupClient{t: t, c: c, clientID: "b"}
	bJoined := make(chan *kmsg.JoinGroupResponse, 1)
	go func() { bJoined <- b.join(ctx) }()
	waitFor(t, 5*time.Second, "rebalance to start", func() bool { return a.heartbeat() == kerr.RebalanceInProgress.Code })
	resp = a.join(ctx)
	bResp := <-bJoined
	if resp.Generation != 2 || bResp.Generation != 2 || resp.LeaderID != a.id || len(resp.Members) != 2 || len(bResp.Members) != 0 {
		t.Fatalf("second generation: leader %+v follower %+v", resp, bResp)
	}
	for _, m := range resp.Members {
		if want := "meta-" + map[string]string{a.id: "a", b.id: "b"}[m.MemberID]; string(m.ProtocolMetadata) != want {
			t.Fatalf("member %s metadata %q, want %q", m.MemberID, m.ProtocolMetadata, want)
		}
	}
	bAssigned := make(chan []byte, 1)
	go func() { bAssigned <- b.sync(ctx, nil) }()
	if got := string(a.sync(ctx, map[string]string{a.id: "p0,p1", b.id: "p2,p3"})); got != "p0,p1" {
		t.Fatalf("leader got %q", got)
	}
	if got := string(<-bAssigned); got != "p2,p3" {
		t.Fatalf("follower got %q", got)
	}

	// B goes silent; A keeps heartbeating and learns of the rebalance.
	waitFor(t, 10*time.Second, "B's session to expire", func() bool { return a.heartbeat() == kerr.RebalanceInProgress.Code })
	resp = a.join(ctx)
	if resp.Generation != 3 || len(resp.Members) != 1 {
		t.Fatalf("after expiry: %+v", resp)
	}
	if code := b.heartbeat(); code != kerr.UnknownMemberID.Code {
		t.Fatalf("expired member heartbeat: %d", code)
	}
	a.sync(ctx, map[string]string{a.id: "all"})
	desc := kmsg.NewPtrDescribeGroupsRequest()
	desc.Groups = []string{"g"}
	dg := c.handleDescribe(desc).(*kmsg.DescribeGroupsResponse).Groups[0]
	if dg.State != "Stable" || len(dg.Members) != 1 || dg.Members[0].MemberID != a.id || string(dg.Members[0].MemberAssignment) != "all" {
		t.Fatalf("describe: %+v", dg)
	}
	list := c.handleList(kmsg.NewPtrListGroupsRequest()).(*kmsg.ListGroupsResponse)
	if len(list.Groups) != 1 || list.Groups[0].Group != "g" {
		t.Fatalf("list: %+v", list.Groups)
	}
}
