#!/bin/sh
# Two single-threaded Sluice instances per node sharing one client port
# (listen_reuseport), each cloned on every node, and a virtual IP on a node
# that runs both (pcs). The same configuration as ha/sluice-reuseport.crm,
# which says why.
# shellcheck disable=SC1010 # "then" is an argument of pcs constraint order
set -eu

for n in 1 2; do
	pcs resource create p_sluice_$n ocf:sluice:sluice \
		config=/etc/sluice/sluice-$n.yaml workdir=/var/lib/sluice/$n daemon_user=sluice \
		op start timeout=60s interval=0s \
		op stop timeout=60s interval=0s \
		op monitor interval=10s timeout=20s \
		op monitor interval=30s timeout=30s OCF_CHECK_LEVEL=10 \
		meta migration-threshold=3 failure-timeout=2min \
		clone cl_sluice_$n interleave=true clone-min=1
done

pcs resource create p_vip ocf:heartbeat:IPaddr2 \
	ip=192.0.2.10 cidr_netmask=24 \
	op monitor interval=10s timeout=20s

for n in 1 2; do
	pcs constraint colocation add p_vip with cl_sluice_$n INFINITY id=col_vip_with_sluice_$n
	pcs constraint order start cl_sluice_$n then start p_vip kind=Mandatory id=ord_sluice_${n}_before_vip
done

pcs resource defaults update resource-stickiness=100
