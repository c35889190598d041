// Command lab starts a MariaDB primary plus GTID replicas on loopback for
// trying Sluice by hand, prints how to reach them and runs until SIGINT or
// SIGTERM, then stops every server.
//
//	go run ./internal/testenv/lab/cmd/lab -replicas 2 -dir .lab
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

func main() {
	replicas := flag.Int("replicas", 2, "number of replicas")
	dir := flag.String("dir", "", "directory for datadirs and logs (default: a temporary directory, removed on exit)")
	verbose := flag.Bool("v", false, "copy mariadbd output to stderr")
	timeout := flag.Duration("timeout", 2*time.Minute, "startup deadline")
	flag.Parse()

	var log io.Writer
	if *verbose {
		log = os.Stderr
	}
	n := *replicas
	if n == 0 {
		n = -1 // Options treats 0 as "default"
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, *timeout)
	began := time.Now()
	t, err := lab.Start(startCtx, lab.Options{Replicas: n, Dir: *dir, Log: log})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab: %v\n", err)
		os.Exit(1)
	}

	fmt.Printf("lab directory: %s\n", t.Dir)
	for _, s := range t.Servers() {
		fmt.Printf("  %-9s %-16s server_id=%d socket=%s log=%s\n", s.Name, s.Addr(), s.ServerID, s.Socket, s.ErrorLog)
	}
	fmt.Println("accounts (host %, all servers):")
	fmt.Printf("  %-9s %-10s %s\n", lab.AppUser, lab.AppPassword, "ALL on *.* (no READ_ONLY ADMIN)")
	fmt.Printf("  %-9s %-10s %s\n", lab.SbtestUser, lab.SbtestPassword, "ALL on *.* (no READ_ONLY ADMIN)")
	fmt.Printf("  %-9s %-10s %s\n", lab.MonitorUser, lab.MonitorPassword, "monitoring + failover privileges")
	fmt.Printf("  %-9s %-10s %s\n", lab.ReplUser, lab.ReplPassword, "REPLICATION SLAVE")
	fmt.Printf("  %-9s %-10s %s\n", lab.NopassUser, "(empty)", "SELECT on app.*")
	fmt.Printf("  %-9s %-10s %s\n", lab.LocalUser+"@127.0.0.1", lab.LocalPassword, "ALL on app.*")
	fmt.Printf("  %-9s %-10s %s\n", "root", "(socket)", "unix_socket auth: mariadb -uroot -S <socket>")
	fmt.Println("databases: app, sbtest")
	p := t.Primary
	fmt.Printf("try: mariadb -h127.0.0.1 -P%d -u%s -p%s app\n", p.Port, lab.AppUser, lab.AppPassword)
	fmt.Printf("lab ready in %s: %d servers; Ctrl-C to stop\n", time.Since(began).Round(time.Millisecond), len(t.Servers()))

	<-ctx.Done()
	fmt.Println("lab: stopping")
	if err := t.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "lab: close: %v\n", err)
		os.Exit(1)
	}
}
