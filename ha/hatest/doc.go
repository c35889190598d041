// Package hatest tests the Pacemaker resource agent ha/sluice against the
// real sluice binary and a real MariaDB topology (internal/testenv/lab): every exit
// code the agent promises, ocf-tester from Debian's resource-agents, and,
// where a single-node Corosync + Pacemaker cluster can run, Pacemaker
// restarting a SIGKILLed clone instance while a virtual IP stays put.
//
// The agent tests need resource-agents (ocf-shellfuncs, ocf-tester),
// libxml2-utils (xmllint) and the mariadb client; the cluster test also needs
// corosync and pacemaker, root, and a private mount namespace (unshare -m),
// so that it never touches this machine's own cluster configuration. A
// missing tool skips the test, or fails it when CI=true.
package hatest
