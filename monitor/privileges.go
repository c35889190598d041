package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
)

// What each feature needs of service_user, checked against SHOW GRANTS
// when the monitor first connects to a server (and after each reconnect),
// so a missing grant is said once, at start, naming the feature and the
// fix, rather than found by a failover that fails. Measured on MariaDB
// 10.11, from the errors of each statement the monitor runs:
//
//	SHOW SLAVE STATUS                     SLAVE MONITOR (or SUPER)
//	STOP/START SLAVE, CHANGE MASTER       REPLICATION SLAVE ADMIN (or SUPER)
//	RESET SLAVE ALL                       RELOAD
//	SET GLOBAL read_only                  READ_ONLY ADMIN (SUPER does not do)
//	SELECT ... FROM mysql.user            SELECT on mysql.user
//	the heartbeat table                   CREATE, INSERT, DELETE, SELECT on its database
//
// MySQL 8 names them REPLICATION CLIENT, REPLICATION_SLAVE_ADMIN, RELOAD
// and SYSTEM_VARIABLES_ADMIN; either spelling satisfies a need.

// Features are the monitor's enabled features whose privileges are checked.
type Features struct {
	AutoFailover, AutoRejoin, Heartbeat bool
	HeartbeatTable                      string
}

// need is one privilege a feature needs: any of names, on db.table.
type need struct {
	feature string
	any     []string
	db      string // "" for global (*.*)
	table   string // "" for every table of db
}

func (f Features) needs() []need {
	ns := []need{
		{feature: "monitoring", any: []string{"SLAVE MONITOR", "REPLICA MONITOR", "SUPER", "REPLICATION CLIENT"}},
		{feature: "account loading", any: []string{"SELECT"}, db: "mysql", table: "user"},
	}
	changes := []need{
		{any: []string{"REPLICATION SLAVE ADMIN", "REPLICATION_SLAVE_ADMIN", "SUPER"}},
		{any: []string{"RELOAD"}},
		{any: []string{"READ_ONLY ADMIN", "SYSTEM_VARIABLES_ADMIN"}},
	}
	topology := []string{"switchover"} // always possible through the admin API
	if f.AutoFailover {
		topology = append(topology, "auto_failover")
	}
	if f.AutoRejoin {
		topology = append(topology, "auto_rejoin")
	}
	for _, feat := range topology {
		for _, n := range changes {
			n.feature = feat
			ns = append(ns, n)
		}
	}
	if f.Heartbeat {
		db, _, _ := strings.Cut(f.HeartbeatTable, ".")
		for _, p := range []string{"CREATE", "INSERT", "DELETE", "SELECT"} {
			ns = append(ns, need{feature: "heartbeat", any: []string{p}, db: db})
		}
	}
	return ns
}

// grants is what SHOW GRANTS says a user holds: privileges by scope
// ("*.*", "mysql.*", "mysql.user").
type grants map[string]map[string]bool

// parseGrants reads SHOW GRANTS rows ("GRANT SELECT, RELOAD ON *.* TO
// `monitor`@`%` IDENTIFIED BY PASSWORD '...'"); roles granted to the user
// are not followed.
func parseGrants(rows []string) grants {
	g := grants{}
	for _, row := range rows {
		rest, ok := strings.CutPrefix(row, "GRANT ")
		if !ok {
			continue
		}
		privs, rest, ok := strings.Cut(rest, " ON ")
		if !ok {
			continue // a role: GRANT `r` TO `u`
		}
		scope, _, _ := strings.Cut(rest, " TO ")
		scope = strings.ReplaceAll(strings.TrimSpace(scope), "`", "")
		if g[scope] == nil {
			g[scope] = map[string]bool{}
		}
		for _, p := range strings.Split(privs, ",") {
			p = strings.TrimSpace(p)
			if i := strings.IndexByte(p, '('); i > 0 { // column privileges: SELECT (a, b)
				p = strings.TrimSpace(p[:i])
			}
			g[scope][strings.ToUpper(p)] = true
		}
	}
	return g
}

// has reports whether g holds one of names on db.table (or above it).
func (g grants) has(n need) bool {
	scopes := []string{"*.*"}
	if n.db != "" {
		scopes = append(scopes, n.db+".*")
		if n.table != "" {
			scopes = append(scopes, n.db+"."+n.table)
		}
	}
	for _, s := range scopes {
		if g[s]["ALL PRIVILEGES"] || g[s]["ALL"] {
			return true
		}
		for _, name := range n.any {
			if g[s][name] {
				return true
			}
		}
	}
	return false
}

// privilegeGaps says, per enabled feature, what the account SHOW GRANTS
// described lacks, with the GRANT that fixes it: one line each, sorted.
func privilegeGaps(rows []string, f Features) []string {
	g := parseGrants(rows)
	user := "service_user"
	for _, row := range rows {
		if _, to, ok := strings.Cut(row, " TO "); ok {
			user, _, _ = strings.Cut(to, " ")
			break
		}
	}
	missing := map[string][]string{}
	var order []string
	for _, n := range f.needs() {
		if g.has(n) {
			continue
		}
		on := "*.*"
		if n.db != "" {
			on = n.db + ".*"
			if n.table != "" {
				on = n.db + "." + n.table
			}
		}
		grant := fmt.Sprintf("GRANT %s ON %s TO %s", n.any[0], on, user)
		if _, seen := missing[n.feature]; !seen {
			order = append(order, n.feature)
		}
		missing[n.feature] = append(missing[n.feature], grant)
	}
	sort.Strings(order)
	out := make([]string, 0, len(order))
	for _, feat := range order {
		out = append(out, fmt.Sprintf("%s needs privileges service_user %s lacks: %s", feat, user, strings.Join(missing[feat], "; ")))
	}
	return out
}

// readGrants runs SHOW GRANTS for the monitor's own account.
func readGrants(conn *client.Conn) ([]string, error) {
	res, err := conn.Execute("SHOW GRANTS")
	if err != nil {
		return nil, err
	}
	defer res.Close()
	rows := make([]string, 0, res.RowNumber())
	for i := range res.RowNumber() {
		s, _ := res.GetString(i, 0)
		rows = append(rows, strings.Clone(s))
	}
	return rows, nil
}

// isPrivilegeError reports errors that retrying will not cure: the server
// refused the statement for the account's privileges.
func isPrivilegeError(err error) bool {
	var me *mysql.MyError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Code {
	case mysql.ER_SPECIFIC_ACCESS_DENIED_ERROR, mysql.ER_TABLEACCESS_DENIED_ERROR, mysql.ER_DBACCESS_DENIED_ERROR, mysql.ER_ACCESS_DENIED_ERROR:
		return true
	}
	return false
}

// privilegeGaps are service_user's missing privileges on sc for the
// enabled features, read on conn's first use and logged once.
func (m *Monitor) privilegeGaps(conn *client.Conn, sc ServerConfig) []string {
	m.mu.Lock()
	gaps, ok := m.gaps[sc.Address]
	m.mu.Unlock()
	if ok {
		return gaps
	}
	rows, err := readGrants(conn)
	if err != nil {
		m.log.Warn("cannot read service_user's grants; its privileges are not checked", "server", sc.Name, "err", err)
		gaps = []string{}
	} else {
		f := Features{AutoFailover: m.cfg.Failover.AutoFailover, AutoRejoin: m.cfg.Failover.AutoRejoin,
			Heartbeat: m.cfg.Heartbeat, HeartbeatTable: m.cfg.HeartbeatTable}
		gaps = privilegeGaps(rows, f)
		for _, g := range gaps {
			m.log.Error("missing privilege", "server", sc.Name, "gap", g)
		}
	}
	m.mu.Lock()
	if m.gaps == nil {
		m.gaps = map[string][]string{}
	}
	m.gaps[sc.Address] = gaps
	m.mu.Unlock()
	return gaps
}

// CheckPrivileges connects to every server of cfg as service_user and says
// what it lacks there for the enabled features (`serve --check-config`).
// A server that cannot be reached is reported as such.
func CheckPrivileges(ctx context.Context, cfg Config, log *slog.Logger) map[string][]string {
	m := New(cfg, log)
	defer m.closeConns()
	out := map[string][]string{}
	for _, sc := range m.cfg.Servers {
		cctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
		conn, err := m.conn(cctx, sc.Address)
		cancel()
		if err != nil {
			out[sc.Name] = []string{"not checked: " + err.Error()}
			continue
		}
		out[sc.Name] = m.privilegeGaps(conn, sc)
	}
	return out
}
