#!/bin/bash
# Runs a single-node Corosync + Pacemaker cluster on loopback for the
# Pacemaker test, inside a private mount namespace (run it under
# `unshare -m --propagation private`) so that this machine's own cluster
# configuration (/etc/corosync, /var/lib/pacemaker, /var/lib/corosync) and
# its OCF agent directory are never touched: temporary directories are
# mounted over them, and the agent under test appears as provider "sluice".
#
#   cluster.sh DIR AGENT
#
# DIR holds everything (DIR/log has the daemons' logs); DIR/cib.xml, when
# present, is the initial CIB. Exits when corosync or pacemakerd exits; on
# SIGTERM, stops pacemakerd (which stops the resources) and then corosync.
set -eu
dir=$1
agent=$2

mkdir -p "$dir/etc-corosync" "$dir/var-lib-corosync" "$dir/log" "$dir/ocf-orig" \
	"$dir/var-lib-pacemaker/cib" "$dir/var-lib-pacemaker/pengine" \
	"$dir/var-lib-pacemaker/blackbox" "$dir/var-lib-pacemaker/cores"
if [ -f "$dir/cib.xml" ]; then
	cp "$dir/cib.xml" "$dir/var-lib-pacemaker/cib/cib.xml"
fi
chown -R hacluster:haclient "$dir/var-lib-pacemaker" "$dir/log"
chmod 750 "$dir/var-lib-pacemaker/cib"

cat >"$dir/etc-corosync/corosync.conf" <<EOC
totem {
	version: 2
	cluster_name: sluicetest
	crypto_cipher: none
	crypto_hash: none
}
logging {
	to_stderr: yes
	to_logfile: yes
	logfile: $dir/log/corosync.log
	to_syslog: no
	timestamp: on
}
quorum {
	provider: corosync_votequorum
}
nodelist {
	node {
		name: node1
		nodeid: 1
		ring0_addr: 127.0.0.1
	}
}
EOC

mount --bind "$dir/etc-corosync" /etc/corosync
mount --bind "$dir/var-lib-corosync" /var/lib/corosync
mount --bind "$dir/var-lib-pacemaker" /var/lib/pacemaker
# The OCF agent directory: a tmpfs holding the installed providers (bound
# from the original directory) plus provider "sluice" with the agent. An
# installed "sluice" provider (the package's) is not bound: the agent under
# test goes into a directory of the tmpfs, never over the machine's.
ocf=/usr/lib/ocf/resource.d
mount --bind "$ocf" "$dir/ocf-orig"
mount -t tmpfs -o mode=755 tmpfs "$ocf"
for p in "$dir"/ocf-orig/*; do
	[ -d "$p" ] || continue
	[ "${p##*/}" != sluice ] || continue
	mkdir "$ocf/${p##*/}"
	mount --bind "$p" "$ocf/${p##*/}"
done
mkdir -p "$ocf/sluice"
install -m 755 "$agent" "$ocf/sluice/sluice"

export PCMK_logfile=$dir/log/pacemaker.log PCMK_logfacility=none
set +e

corosync -f >"$dir/log/corosync.out" 2>&1 &
cs=$!
# pacemakerd needs a running corosync.
ready=""
for _ in $(seq 1 300); do
	if ! kill -0 "$cs" 2>/dev/null; then
		wait "$cs"
		echo "cluster.sh: corosync exited with status $? before it was ready: $(tail -n 5 "$dir/log/corosync.out" | tr '\n' ' ')" >&2
		exit 3
	fi
	if corosync-cfgtool -s >/dev/null 2>&1; then
		ready=1
		break
	fi
	sleep 0.1
done
if [ -z "$ready" ]; then
	echo "cluster.sh: corosync not ready within 30s: $(tail -n 5 "$dir/log/corosync.out" | tr '\n' ' ')" >&2
	kill -KILL "$cs"
	exit 3
fi

pacemakerd -f >"$dir/log/pacemakerd.out" 2>&1 &
pm=$!
echo "cluster.sh: corosync $cs, pacemakerd $pm" >&2

stop() {
	kill -TERM "$pm" 2>/dev/null && wait "$pm"
	kill -TERM "$cs" 2>/dev/null && wait "$cs"
	exit 0
}
trap stop TERM INT

wait -n "$cs" "$pm"
status=$?
if ! kill -0 "$pm" 2>/dev/null; then
	echo "cluster.sh: pacemakerd exited with status $status: $(tail -n 5 "$dir/log/pacemakerd.out" | tr '\n' ' ')" >&2
else
	echo "cluster.sh: corosync exited with status $status: $(tail -n 5 "$dir/log/corosync.out" | tr '\n' ' ')" >&2
fi
kill -TERM "$pm" "$cs" 2>/dev/null
wait
exit 4
