// Command demo is `make demo`: it starts a MariaDB primary with two GTID
// replicas, runs Sluice with its bundled broker in front of them, sends
// sample traffic through Sluice with the mariadb client and Go's MySQL
// driver, and shows what Sluice saw.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

func main() {
	sluiceBin := flag.String("sluice", "bin/sluice", "the sluice binary")
	keep := flag.Bool("keep", false, "keep everything running until Ctrl-C")
	flag.Parse()
	if err := run(*sluiceBin, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func run(sluiceBin string, keep bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	step("starting MariaDB: a primary and two GTID replicas on loopback")
	topo, err := lab.Start(ctx, lab.Options{Replicas: 2})
	if err != nil {
		return err
	}
	defer topo.Close()
	for _, s := range topo.Servers() {
		fmt.Printf("    %-9s %s (server_id %d)\n", s.Name, s.Addr(), s.ServerID)
	}

	dir, err := os.MkdirTemp("", "sluice-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	listen, admin, broker := freeAddr(), freeAddr(), freeAddr()
	var servers strings.Builder
	for _, s := range topo.Servers() {
		fmt.Fprintf(&servers, "  - name: %s\n    address: %s\n", s.Name, s.Addr())
	}
	cfgPath := filepath.Join(dir, "sluice.yaml")
	cfg := fmt.Sprintf(`name: demo
listen: %s
admin_listen: %s
servers:
%sservice_user: {user: %s, password: %s}
router: {type: readwritesplit, causal_reads: true}
monitor: {interval: 500ms}
genlog: {enabled: true, topic: sluice.genlog}
broker: {enabled: true, listen: %s, data_dir: %s, partitions: 4}
`, listen, admin, servers.String(), lab.MonitorUser, lab.MonitorPassword, broker, filepath.Join(dir, "broker"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	step("starting Sluice: MySQL on %s, admin on %s, bundled Kafka-protocol broker on %s", listen, admin, broker)
	fmt.Print(indent(cfg))
	sluice := exec.Command(sluiceBin, "serve", "--config", cfgPath)
	sluice.Stdout, sluice.Stderr = os.Stdout, os.Stderr
	if err := sluice.Start(); err != nil {
		return fmt.Errorf("start %s (run make build first): %w", sluiceBin, err)
	}
	defer func() {
		sluice.Process.Signal(syscall.SIGTERM)
		sluice.Wait()
	}()
	if err := waitHealthy(ctx, admin); err != nil {
		return err
	}

	host, port, _ := net.SplitHostPort(listen)
	step("sample traffic through Sluice with the mariadb client")
	script := `CREATE TABLE IF NOT EXISTS demo_orders (id INT AUTO_INCREMENT PRIMARY KEY, item VARCHAR(32), qty INT);
INSERT INTO demo_orders (item, qty) VALUES ('espresso', 2), ('croissant', 1), ('tea', 3);
BEGIN; UPDATE demo_orders SET qty = qty + 1 WHERE item = 'tea'; COMMIT;
SELECT id, item, qty FROM demo_orders ORDER BY id;
SELECT @@server_id AS answered_by, USER() AS user, DATABASE() AS db;`
	fmt.Print(indent(script + "\n"))
	out, err := exec.CommandContext(ctx, "mariadb", "--protocol=TCP", "-h", host, "-P", port,
		"-u", lab.AppUser, "-p"+lab.AppPassword, "-t", "app", "-e", script).CombinedOutput()
	fmt.Print(indent(string(out)))
	if err != nil {
		return fmt.Errorf("mariadb client: %w", err)
	}

	step("prepared statements through Sluice with Go's MySQL driver")
	dsn := mysql.NewConfig()
	dsn.User, dsn.Passwd, dsn.Net, dsn.Addr, dsn.DBName = lab.AppUser, lab.AppPassword, "tcp", listen, "app"
	db, err := sql.Open("mysql", dsn.FormatDSN())
	if err != nil {
		return err
	}
	defer db.Close()
	for _, item := range []string{"espresso", "tea"} {
		var qty int
		if err := db.QueryRowContext(ctx, "SELECT qty FROM demo_orders WHERE item = ?", item).Scan(&qty); err != nil {
			return err
		}
		fmt.Printf("    %s: %d\n", item, qty)
	}

	step("a failed login is refused like MariaDB refuses it")
	bad := *dsn
	bad.Passwd = "wrong"
	bdb, _ := sql.Open("mysql", bad.FormatDSN())
	fmt.Printf("    %v\n", bdb.PingContext(ctx))
	bdb.Close()

	step("what Sluice counted (GET http://%s/metrics)", admin)
	if err := showMetrics(admin); err != nil {
		return err
	}

	step("the audit trail: topic sluice.genlog in the bundled broker, read with kcat (Debian's librdkafka client)")
	fmt.Printf("    kcat -b %s -t sluice.genlog -C -e -o beginning -q\n", broker)
	if err := showTopic(ctx, broker, "sluice.genlog", 16); err != nil {
		return err
	}
	step("topology events: topic sluice.events")
	if err := showTopic(ctx, broker, "sluice.events", 4); err != nil {
		return err
	}

	if keep {
		step("running until Ctrl-C: mariadb --protocol=TCP -h %s -P %s -u %s -p%s app", host, port, lab.AppUser, lab.AppPassword)
		<-ctx.Done()
	}
	step("stopping Sluice (SIGTERM drains) and MariaDB")
	return nil
}

// showTopic prints a topic's records with kcat once they have arrived (the
// producer batches for a few milliseconds).
func showTopic(ctx context.Context, broker, topic string, wantAtLeast int) error {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		return fmt.Errorf("kcat not installed: %w", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, _ := exec.CommandContext(ctx, kcat, "-b", broker, "-t", topic, "-C", "-e", "-o", "beginning", "-q").Output()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) >= wantAtLeast || time.Now().After(deadline) {
			for _, l := range lines {
				fmt.Println("    " + l)
			}
			return nil
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func showMetrics(admin string) error {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "sluice_") {
			fmt.Println("    " + l)
		}
	}
	return sc.Err()
}

func waitHealthy(ctx context.Context, admin string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get("http://" + admin + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sluice did not become healthy: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func freeAddr() string {
	port, err := lab.FreePort()
	if err != nil {
		panic(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}
