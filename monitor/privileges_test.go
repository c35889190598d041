package monitor

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestPrivilegeGaps(t *testing.T) {
	const to = " TO `monitor`@`%` IDENTIFIED BY PASSWORD '*0123456789ABCDEF0123456789ABCDEF01234567'"
	// What the README asks for, as MariaDB 10.11 shows it.
	full := []string{
		"GRANT RELOAD, SUPER, READ_ONLY ADMIN, SLAVE MONITOR ON *.*" + to,
		"GRANT SELECT ON `mysql`.* TO `monitor`@`%`",
		"GRANT ALL PRIVILEGES ON `sluice`.* TO `monitor`@`%`",
	}
	// What the README listed before failover needed more.
	monitorOnly := []string{
		"GRANT PROCESS, BINLOG MONITOR, SLAVE MONITOR ON *.*" + to,
		"GRANT SELECT ON `mysql`.* TO `monitor`@`%`",
	}
	all := Features{AutoFailover: true, AutoRejoin: true, Heartbeat: true, HeartbeatTable: "sluice.heartbeat"}
	for _, c := range []struct {
		name string
		rows []string
		f    Features
		want []string // each a line's start; nil: no gaps
	}{
		{"everything granted", full, all, nil},
		{"ALL PRIVILEGES on *.*", []string{"GRANT ALL PRIVILEGES ON *.*" + to}, all, nil},
		{"monitoring only, nothing more enabled", monitorOnly, Features{}, []string{
			"switchover needs privileges service_user `monitor`@`%` lacks: GRANT REPLICATION SLAVE ADMIN ON *.* TO `monitor`@`%`; GRANT RELOAD ON *.* TO `monitor`@`%`; GRANT READ_ONLY ADMIN ON *.* TO `monitor`@`%`"}},
		{"monitoring grants with failover and heartbeat on", monitorOnly, all, []string{
			"auto_failover needs privileges service_user `monitor`@`%` lacks: GRANT REPLICATION SLAVE ADMIN",
			"auto_rejoin needs",
			"heartbeat needs privileges service_user `monitor`@`%` lacks: GRANT CREATE ON sluice.* TO `monitor`@`%`; GRANT INSERT ON sluice.*",
			"switchover needs"}},
		{"SUPER without READ_ONLY ADMIN or RELOAD", []string{"GRANT SUPER ON *.*" + to, "GRANT SELECT ON `mysql`.`user` TO `monitor`@`%`"}, Features{AutoFailover: true}, []string{
			"auto_failover needs privileges service_user `monitor`@`%` lacks: GRANT RELOAD ON *.* TO `monitor`@`%`; GRANT READ_ONLY ADMIN ON *.* TO `monitor`@`%`",
			"switchover needs"}},
		{"MySQL 8 names", []string{"GRANT RELOAD, REPLICATION CLIENT ON *.*" + to, "GRANT REPLICATION_SLAVE_ADMIN,SYSTEM_VARIABLES_ADMIN ON *.*" + to, "GRANT SELECT ON `mysql`.`user` TO `monitor`@`%`"}, Features{AutoFailover: true}, nil},
		{"nothing", []string{"GRANT USAGE ON *.*" + to}, Features{}, []string{
			"account loading needs privileges service_user `monitor`@`%` lacks: GRANT SELECT ON mysql.user TO `monitor`@`%`",
			"monitoring needs privileges service_user `monitor`@`%` lacks: GRANT SLAVE MONITOR ON *.* TO `monitor`@`%`",
			"switchover needs"}},
		{"column privileges and a role", []string{"GRANT USAGE ON *.*" + to, "GRANT SELECT (User, Host) ON `mysql`.`user` TO `monitor`@`%`", "GRANT `monitoring` TO `monitor`@`%`"}, Features{}, []string{
			"monitoring needs", "switchover needs"}},
	} {
		got := privilegeGaps(c.rows, c.f)
		if len(got) != len(c.want) {
			t.Errorf("%s: %d gaps %q, want %d", c.name, len(got), got, len(c.want))
			continue
		}
		for i := range got {
			if !strings.HasPrefix(got[i], c.want[i]) {
				t.Errorf("%s: gap %d is %q, want it to start %q", c.name, i, got[i], c.want[i])
			}
		}
	}
}

// A service user granted only what monitoring needs: the monitor monitors,
// and every server's snapshot says what auto_failover and switchover lack,
// naming the GRANT; the full lab user has no gaps.
func TestPrivilegeGapsInTheSnapshot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, q := range []string{
		"CREATE USER IF NOT EXISTS 'weakmon'@'%' IDENTIFIED BY 'weakpass'",
		"GRANT SELECT ON mysql.user TO 'weakmon'@'%'",
		"GRANT SLAVE MONITOR ON *.* TO 'weakmon'@'%'",
	} {
		if err := topo.Primary.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = topo.Primary.Exec(context.Background(), "DROP USER IF EXISTS 'weakmon'@'%'") })
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	var servers []ServerConfig
	for _, s := range topo.Servers() {
		servers = append(servers, ServerConfig{Name: s.Name, Address: s.Addr(), Weight: 1})
	}
	weak := New(Config{Servers: servers, User: "weakmon", Password: "weakpass", Interval: time.Second, Timeout: 2 * time.Second,
		Failover: FailoverConfig{AutoFailover: true}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer weak.closeConns()
	weak.Poll(ctx)
	snap := weak.Snapshot()
	if _, ok := snap.PrimaryServer(); !ok {
		t.Fatalf("monitoring grants should find the primary: %+v", snap.Servers)
	}
	for _, s := range snap.Servers {
		joined := strings.Join(s.PrivilegeGaps, "\n")
		if !strings.Contains(joined, "auto_failover needs privileges service_user `weakmon`@`%` lacks: GRANT REPLICATION SLAVE ADMIN ON *.* TO `weakmon`@`%`") ||
			!strings.Contains(joined, "GRANT READ_ONLY ADMIN") || !strings.Contains(joined, "switchover needs") || strings.Contains(joined, "monitoring") {
			t.Errorf("%s: gaps %q", s.Name, s.PrivilegeGaps)
		}
	}
	full := newMonitor(t, Config{Failover: FailoverConfig{AutoFailover: true}, Heartbeat: true})
	if _, err := full.WaitPrimary(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range full.Snapshot().Servers {
		if len(s.PrivilegeGaps) != 0 {
			t.Errorf("%s: the lab's monitor user has every grant, yet %q", s.Name, s.PrivilegeGaps)
		}
	}
}
