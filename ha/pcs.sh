#!/bin/sh
# Sluice on every node as a Pacemaker clone, and a virtual IP on one node
# that runs it (pcs). The same configuration as ha/sluice.crm, with the
# reasons for each setting there and in ha/README.md. Edit the IP and the
# config path first. Fencing is not in here: configure it for your hardware
# and keep stonith-enabled=true.
# shellcheck disable=SC1010 # "then" is an argument of pcs constraint order
set -eu

pcs resource create p_sluice ocf:sluice:sluice \
	config=/etc/sluice/sluice.yaml binary=/usr/local/bin/sluice daemon_user=sluice \
	op start timeout=60s interval=0s \
	op stop timeout=60s interval=0s \
	op monitor interval=10s timeout=20s \
	op monitor interval=30s timeout=30s OCF_CHECK_LEVEL=10 \
	meta migration-threshold=3 failure-timeout=2min \
	clone cl_sluice interleave=true clone-min=1

pcs resource create p_vip ocf:heartbeat:IPaddr2 \
	ip=192.0.2.10 cidr_netmask=24 \
	op monitor interval=10s timeout=20s

pcs constraint colocation add p_vip with cl_sluice INFINITY id=col_vip_with_sluice
pcs constraint order start cl_sluice then start p_vip kind=Mandatory id=ord_sluice_before_vip

pcs resource defaults update resource-stickiness=100
