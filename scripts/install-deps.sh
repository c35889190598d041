#!/usr/bin/env bash
# Installs, from Debian's packages, what Sluice's tests and demo run against,
# when it is missing. Safe to run again.
set -euo pipefail
need=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
command -v sysbench >/dev/null 2>&1 || need+=(sysbench)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v kcat >/dev/null 2>&1 || need+=(kcat)
/usr/bin/python3 -c 'import confluent_kafka' >/dev/null 2>&1 || need+=(python3-confluent-kafka)
# PyMySQL logs in through Sluice in proxy's authentication tests; PyNaCl
# gives it client_ed25519.
/usr/bin/python3 -c 'import pymysql' >/dev/null 2>&1 || need+=(python3-pymysql)
/usr/bin/python3 -c 'import nacl' >/dev/null 2>&1 || need+=(python3-nacl)
# The MariaDB JDBC driver logs in through Sluice in the same tests.
[ -e /usr/share/java/mariadb-java-client.jar ] || need+=(libmariadb-java)
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
[ -e /usr/lib/galera/libgalera_smm.so ] || need+=(galera-4 rsync)
# The Pacemaker resource agent (ha/) and its tests.
[ -e /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs ] && [ -x /usr/sbin/ocf-tester ] || need+=(resource-agents)
command -v xmllint >/dev/null 2>&1 || need+=(libxml2-utils)
command -v curl >/dev/null 2>&1 || need+=(curl)
# Headless Chromium loads the web console in cmd/sluice's TestWebConsole.
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
cluster=()
[ -x /usr/sbin/corosync ] || cluster+=(corosync)
[ -x /usr/sbin/pacemakerd ] || cluster+=(pacemaker)
[ -x /usr/sbin/cibadmin ] || cluster+=(pacemaker-cli-utils)
[ -x /usr/sbin/crm ] || cluster+=(crmsh)
[ -x /usr/sbin/pcs ] || cluster+=(pcs)
need+=(${cluster[@]+"${cluster[@]}"})
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# The package test (packaging/): lintian on the .deb it builds.
command -v lintian >/dev/null 2>&1 || need+=(lintian)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-deps: need root or sudo to install: ${need[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "install-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packages start system services we do not use; the tests run their own.
for svc in mariadb haproxy; do
  $sudo systemctl stop "$svc" >/dev/null 2>&1 || $sudo service "$svc" stop >/dev/null 2>&1 || true
done
# Newly installed cluster packages start (and enable) a cluster of one
# node; the HA test runs its own, in a private mount namespace.
if [ ${#cluster[@]} -gt 0 ]; then
  for svc in pcsd pacemaker corosync; do
    $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || $sudo service "$svc" stop >/dev/null 2>&1 || true
  done
fi
