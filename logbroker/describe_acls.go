package logbroker

// DescribeAcls (key 29) v0-3: the ACLs of broker.acls that match the
// filter, one resource per topic, group or cluster pattern. Describing
// ACLs needs describe on the cluster, as in Kafka; with authorization off
// the answer is SECURITY_DISABLED. ACLs come from the config only:
// CreateAcls and DeleteAcls are not served.

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (b *Broker) handleDescribeACLs(req *kmsg.DescribeACLsRequest, cs *connState) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
	resp.Resources = []kmsg.DescribeACLsResponseResource{}
	switch {
	case b.authz == nil:
		resp.ErrorCode = kerr.SecurityDisabled.Code
		resp.ErrorMessage = strPtr("no authentication or ACLs are configured on this broker (broker.sasl, broker.tls.client_ca, broker.acls)")
		return resp
	case !b.can(cs, opDescribe, resCluster, ""):
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		resp.ErrorMessage = strPtr("describing ACLs needs describe on the cluster (an ACL with cluster: true)")
		return resp
	}
	resp.Resources = describeACLs(b.authz.rules, req)
	return resp
}

// describeACLs lists the rules' bindings matching the filter f, grouped by
// resource in rule order.
func describeACLs(rules []aclRule, f *kmsg.DescribeACLsRequest) []kmsg.DescribeACLsResponseResource {
	out := []kmsg.DescribeACLsResponseResource{}
	index := make(map[[3]any]int)
	add := func(rt kmsg.ACLResourceType, p pattern, r aclRule) {
		name, pt := p.kafka()
		if rt == kmsg.ACLResourceTypeCluster {
			name, pt = "kafka-cluster", kmsg.ACLResourcePatternTypeLiteral
		}
		if !resourceFilterMatches(f, rt, name, pt) {
			return
		}
		principal := "User:" + r.principal
		if f.Principal != nil && *f.Principal != principal {
			return
		}
		if f.Host != nil && *f.Host != "*" {
			return
		}
		if f.PermissionType != kmsg.ACLPermissionTypeAny && f.PermissionType != kmsg.ACLPermissionTypeAllow {
			return
		}
		key := [3]any{rt, name, pt}
		i, ok := index[key]
		if !ok {
			res := kmsg.NewDescribeACLsResponseResource()
			res.ResourceType, res.ResourceName, res.ResourcePatternType = rt, name, pt
			res.ACLs = []kmsg.DescribeACLsResponseResourceACL{}
			out = append(out, res)
			i = len(out) - 1
			index[key] = i
		}
		for _, op := range r.ops {
			if f.Operation != kmsg.ACLOperationAny && f.Operation != op {
				continue
			}
			a := kmsg.NewDescribeACLsResponseResourceACL()
			a.Principal, a.Host, a.Operation, a.PermissionType = principal, "*", op, kmsg.ACLPermissionTypeAllow
			out[i].ACLs = append(out[i].ACLs, a)
		}
	}
	for _, r := range rules {
		for _, p := range r.topics {
			add(kmsg.ACLResourceTypeTopic, p, r)
		}
		for _, p := range r.groups {
			add(kmsg.ACLResourceTypeGroup, p, r)
		}
		if r.cluster {
			add(kmsg.ACLResourceTypeCluster, pattern{}, r)
		}
	}
	kept := out[:0]
	for _, res := range out {
		if len(res.ACLs) > 0 {
			kept = append(kept, res)
		}
	}
	return kept
}

// resourceFilterMatches applies DescribeAcls' resource filter: type, name
// and pattern type (ANY and MATCH as Kafka defines them).
func resourceFilterMatches(f *kmsg.DescribeACLsRequest, rt kmsg.ACLResourceType, name string, pt kmsg.ACLResourcePatternType) bool {
	if f.ResourceType != kmsg.ACLResourceTypeAny && f.ResourceType != rt {
		return false
	}
	fpt := f.ResourcePatternType
	if f.Version == 0 {
		fpt = kmsg.ACLResourcePatternTypeLiteral
	}
	switch fpt {
	case kmsg.ACLResourcePatternTypeAny:
		return f.ResourceName == nil || *f.ResourceName == name
	case kmsg.ACLResourcePatternTypeMatch:
		// Every binding that applies to the named resource.
		if f.ResourceName == nil {
			return true
		}
		switch pt {
		case kmsg.ACLResourcePatternTypePrefixed:
			return len(*f.ResourceName) >= len(name) && (*f.ResourceName)[:len(name)] == name
		default:
			return name == "*" || name == *f.ResourceName
		}
	default:
		return fpt == pt && (f.ResourceName == nil || *f.ResourceName == name)
	}
}
