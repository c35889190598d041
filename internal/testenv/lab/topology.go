package lab

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Accounts created on the primary (and replicated everywhere).
const (
	ReplUser, ReplPassword       = "repl", "replpass"
	MonitorUser, MonitorPassword = "monitor", "monpass"
	AppUser, AppPassword         = "app", "apppass"
	SbtestUser, SbtestPassword   = "sbtest", "sbtest"
	NopassUser                   = "nopass" // empty password, SELECT on app.*
	LocalUser, LocalPassword     = "local", "localpass"
	OtherhostUser                = "otherhost" // @10.9.9.9, password "x": never matches loopback
)

// setupSQL runs on the primary (binlog on) before replication starts.
var setupSQL = []string{
	"CREATE USER 'repl'@'%' IDENTIFIED BY 'replpass'",
	"GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'",
	"CREATE USER 'monitor'@'%' IDENTIFIED BY 'monpass'",
	"GRANT SELECT ON mysql.* TO 'monitor'@'%'",
	"GRANT ALL PRIVILEGES ON sluice.* TO 'monitor'@'%'",
	"GRANT PROCESS, REPLICATION CLIENT, REPLICA MONITOR, SUPER, READ_ONLY ADMIN, RELOAD, BINLOG ADMIN ON *.* TO 'monitor'@'%'",
	"CREATE USER 'app'@'%' IDENTIFIED BY 'apppass'",
	"GRANT ALL PRIVILEGES ON *.* TO 'app'@'%'",
	// ALL includes READ_ONLY ADMIN since 10.11, which would let the account
	// write on read_only replicas.
	"REVOKE READ_ONLY ADMIN ON *.* FROM 'app'@'%'",
	"CREATE USER 'sbtest'@'%' IDENTIFIED BY 'sbtest'",
	"GRANT ALL PRIVILEGES ON *.* TO 'sbtest'@'%'",
	"REVOKE READ_ONLY ADMIN ON *.* FROM 'sbtest'@'%'",
	"CREATE USER 'nopass'@'%'",
	"GRANT SELECT ON app.* TO 'nopass'@'%'",
	"CREATE USER 'local'@'127.0.0.1' IDENTIFIED BY 'localpass'",
	"GRANT ALL PRIVILEGES ON app.* TO 'local'@'127.0.0.1'",
	"CREATE USER 'otherhost'@'10.9.9.9' IDENTIFIED BY 'x'",
	"GRANT ALL PRIVILEGES ON app.* TO 'otherhost'@'10.9.9.9'",
	"CREATE DATABASE app",
	"CREATE DATABASE sbtest",
}

// Options configures Start.
type Options struct {
	Replicas int       // default 2 (0 means default; negative means none)
	Dir      string    // default: os.MkdirTemp; removed by Close if Start created it
	Log      io.Writer // where mariadbd stdout/stderr go (most output is in <Dir>/<name>.err)
	// ExtraArgs are added to every mariadbd's command line (e.g. TLS files).
	ExtraArgs []string
	// MaxConnections is every server's max_connections; 0 means
	// DefaultMaxConnections, so that tests and benchmarks with thousands of
	// clients are not limited by the servers. MariaDB's own default, 151,
	// is what a test of a proxy's connection pooling wants.
	MaxConnections int
}

// DefaultMaxConnections is the servers' max_connections unless
// Options.MaxConnections says otherwise.
const DefaultMaxConnections = 3000

// Topology is a running primary plus replicas.
type Topology struct {
	Dir      string
	Primary  *Server
	Replicas []*Server

	removeDirs []string
	closeOnce  sync.Once
	closeErr   error
}

// Servers returns the primary followed by the replicas.
func (t *Topology) Servers() []*Server {
	out := make([]*Server, 0, 1+len(t.Replicas))
	if t.Primary != nil {
		out = append(out, t.Primary)
	}
	return append(out, t.Replicas...)
}

// InstallSoname loads a plugin library (INSTALL SONAME, e.g. auth_ed25519)
// on every server, so that statements using it replicate; one already
// loaded is fine.
func (t *Topology) InstallSoname(ctx context.Context, soname string) error {
	for _, s := range t.Servers() {
		err := s.Exec(ctx, "INSTALL SONAME '"+soname+"'")
		if err != nil && !strings.Contains(err.Error(), "already installed") {
			return fmt.Errorf("%s: INSTALL SONAME '%s': %w", s.Name, soname, err)
		}
	}
	return nil
}

// Binaries locates mariadbd and mariadb-install-db: $LAB_MARIADBD and
// $LAB_MARIADB_INSTALL_DB when set, else PATH and the usual locations.
func Binaries() (mariadbd, installDB string, err error) {
	if p := os.Getenv("LAB_MARIADBD"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("LAB_MARIADBD: %w", err)
		}
		mariadbd = p
	}
	if p := os.Getenv("LAB_MARIADB_INSTALL_DB"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("LAB_MARIADB_INSTALL_DB: %w", err)
		}
		installDB = p
	}
	if mariadbd == "" {
		mariadbd = lookPath("mariadbd", "/usr/sbin/mariadbd", "/usr/libexec/mariadbd", "/usr/local/mysql/bin/mariadbd", "/opt/homebrew/bin/mariadbd")
	}
	if installDB == "" {
		installDB = lookPath("mariadb-install-db", "/usr/bin/mariadb-install-db", "/usr/local/mysql/scripts/mariadb-install-db", "/usr/bin/mysql_install_db")
	}
	switch {
	case mariadbd == "":
		return "", "", errors.New("mariadbd not found in PATH or /usr/sbin")
	case installDB == "":
		return "", "", errors.New("mariadb-install-db not found in PATH")
	}
	return mariadbd, installDB, nil
}

func lookPath(name string, fallbacks ...string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range fallbacks {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// Start creates a primary and opts.Replicas replicas, creates the lab
// accounts and databases on the primary, starts GTID replication and waits
// until every replica has caught up.
func Start(ctx context.Context, opts Options) (_ *Topology, err error) {
	if opts.Replicas == 0 {
		opts.Replicas = 2
	}
	if opts.Replicas < 0 {
		opts.Replicas = 0
	}
	mariadbd, installDB, err := Binaries()
	if err != nil {
		return nil, err
	}

	t := &Topology{}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	var sockDir string
	t.Dir, sockDir, t.removeDirs, err = makeDirs(opts.Dir, "sluice-lab-", "replica99.sock")
	if err != nil {
		return nil, err
	}

	names := []string{"primary"}
	for i := 1; i <= opts.Replicas; i++ {
		names = append(names, "replica"+strconv.Itoa(i))
	}
	// A re-used Dir (cmd/lab -dir .lab) starts from scratch.
	for _, n := range append([]string{"template"}, names...) {
		for _, p := range []string{n, n + ".err", n + ".pid", n + ".sock"} {
			if err := os.RemoveAll(filepath.Join(t.Dir, p)); err != nil {
				return nil, err
			}
		}
	}

	template := filepath.Join(t.Dir, "template")
	if err := installTemplate(ctx, installDB, template, opts.Log); err != nil {
		return nil, err
	}

	for i, n := range names {
		s := &Server{
			Name:     n,
			Host:     "127.0.0.1",
			ServerID: i + 1,
			DataDir:  filepath.Join(t.Dir, n),
			Socket:   filepath.Join(sockDir, n+".sock"),
			PidFile:  filepath.Join(t.Dir, n+".pid"),
			ErrorLog: filepath.Join(t.Dir, n+".err"),
			bin:      mariadbd,
			replica:  i > 0,
			log:      opts.Log,
			extra:    opts.ExtraArgs,
			maxConn:  opts.MaxConnections,
		}
		if i == 0 {
			t.Primary = s
		} else {
			t.Replicas = append(t.Replicas, s)
		}
	}

	// Copy the template and boot every server in parallel.
	servers := t.Servers()
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := copyDir(template, s.DataDir); err != nil {
				errs[i] = fmt.Errorf("%s: copy template: %w", s.Name, err)
				return
			}
			errs[i] = startFresh(ctx, s)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	os.RemoveAll(template)

	for _, q := range setupSQL {
		if err := t.Primary.Exec(ctx, q); err != nil {
			return nil, err
		}
	}
	for _, r := range t.Replicas {
		if err := t.PointReplica(ctx, r, t.Primary); err != nil {
			return nil, err
		}
	}
	if err := t.WaitReplicasCaughtUp(ctx); err != nil {
		return nil, err
	}
	return t, nil
}

// startFresh starts a new server, picking another port if the one chosen
// was grabbed by someone else in the meantime.
func startFresh(ctx context.Context, s *Server) error {
	for attempt := 0; ; attempt++ {
		port, err := FreePort()
		if err != nil {
			return err
		}
		s.Port = port
		err = s.Start(ctx)
		if err == nil || !errors.Is(err, errPortInUse) || attempt >= 3 {
			return err
		}
	}
}

func installTemplate(ctx context.Context, installDB, dir string, log io.Writer) error {
	// Its own tmpdir: bootstraps running side by side in a shared /tmp
	// trip over each other's temporary tables ("Unknown table
	// 'mysql.tmp_user_sys'") and fail.
	tmp := dir + ".tmp"
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, installDB,
		"--no-defaults",
		"--user=root",
		"--datadir="+dir,
		"--tmpdir="+tmp,
		"--auth-root-authentication-method=socket",
		"--skip-test-db",
		// same InnoDB geometry as the servers, so nothing is resized at boot
		"--innodb-log-file-size=48M",
		"--innodb-buffer-pool-size=64M",
		"--innodb-use-native-aio=0",
	)
	var out bytes.Buffer
	if log != nil {
		cmd.Stdout = io.MultiWriter(&out, log)
	} else {
		cmd.Stdout = &out
	}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = DieWithParent(&syscall.SysProcAttr{}, syscall.SIGKILL)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mariadb-install-db: %w\n%s", err, lastLines(out.Bytes(), 20))
	}
	return nil
}

// PointReplica makes r replicate from primary with GTID (slave_pos) and
// starts the slave threads. Exported so failover tests can re-point.
func (t *Topology) PointReplica(ctx context.Context, r, primary *Server) error {
	db, err := r.RootDB()
	if err != nil {
		return err
	}
	// One connection: STOP SLAVE / CHANGE MASTER / START SLAVE in order.
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stmts := []string{
		"STOP SLAVE",
		fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='%s', MASTER_PORT=%d, MASTER_USER='%s', MASTER_PASSWORD='%s', "+
			"MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
			primary.Host, primary.Port, ReplUser, ReplPassword),
		"START SLAVE",
	}
	for _, q := range stmts {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %s: %w", r.Name, q, err)
		}
	}
	return nil
}

// WaitReplicasCaughtUp waits until every running replica's gtid_slave_pos
// has reached the primary's current gtid_binlog_pos.
func (t *Topology) WaitReplicasCaughtUp(ctx context.Context) error {
	pdb, err := t.Primary.RootDB()
	if err != nil {
		return err
	}
	var pos string
	if err := pdb.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&pos); err != nil {
		return fmt.Errorf("primary: gtid_binlog_pos: %w", err)
	}
	for _, r := range t.Replicas {
		if err := waitGTID(ctx, r, pos); err != nil {
			return err
		}
	}
	return nil
}

func waitGTID(ctx context.Context, r *Server, pos string) error {
	db, err := r.RootDB()
	if err != nil {
		return err
	}
	var lastErr error
	for {
		var res int
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := db.QueryRowContext(qctx, "SELECT MASTER_GTID_WAIT(?, 0.5)", pos).Scan(&res)
		cancel()
		if err == nil && res == 0 {
			return nil
		}
		if err != nil {
			lastErr = err
		} else {
			sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			st, serr := SlaveStatus(sctx, r)
			scancel()
			if serr == nil {
				lastErr = fmt.Errorf("gtid_slave_pos=%s io=%s sql=%s last_io_error=%q last_sql_error=%q",
					st["Gtid_Slave_Pos"], st["Slave_IO_Running"], st["Slave_SQL_Running"], st["Last_IO_Error"], st["Last_SQL_Error"])
				if st["Slave_SQL_Running"] == "No" && st["Last_SQL_Error"] != "" {
					return fmt.Errorf("%s: replication stopped: %w", r.Name, lastErr)
				}
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: waiting for GTID %s: %w (%v)", r.Name, pos, ctx.Err(), lastErr)
		}
		if err != nil {
			// server down or restarting: poll again shortly
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// SlaveStatus returns SHOW SLAVE STATUS of s as column -> value (empty map
// when s is not a replica).
func SlaveStatus(ctx context.Context, s *Server) (map[string]string, error) {
	db, err := s.RootDB()
	if err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	if rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		for i, c := range cols {
			out[c] = string(vals[i])
		}
	}
	return out, rows.Err()
}

// Close stops every mariadbd (SIGTERM, SIGKILL after 15s), closes the root
// pools and removes Dir if Start created it. Safe to call more than once.
func (t *Topology) Close() error {
	t.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		servers := t.Servers()
		errs := make([]error, len(servers))
		var wg sync.WaitGroup
		for i, s := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.closeDB()
				errs[i] = s.Stop(ctx)
			}()
		}
		wg.Wait()
		for _, d := range t.removeDirs {
			if err := os.RemoveAll(d); err != nil {
				errs = append(errs, err)
			}
		}
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}

// RunTests is for TestMain: it starts a topology, hands it to setTopology,
// runs m, closes the topology and exits with m's code (see Main).
func RunTests(m *testing.M, opts Options, setTopology func(*Topology)) {
	os.Exit(Main(m, opts, setTopology))
}

// MainWithSluice is Main for packages that also run bin/sluice: it builds
// it from this checkout and removes it when the tests end. Listing and
// fuzzing build and start nothing.
func MainWithSluice(m *testing.M, opts Options, setup func(t *Topology, sluice string)) int {
	if !ServersNeeded() {
		return m.Run()
	}
	bin, err := BuildSluice()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(filepath.Dir(bin))
	return Main(m, opts, func(t *Topology) { setup(t, bin) })
}

// ServersNeeded reports whether this test binary runs tests, rather than
// listing them (go test -list, which make fuzz uses to find fuzz targets)
// or fuzzing, which runs only fuzz targets in many worker processes.
func ServersNeeded() bool {
	if !flag.Parsed() {
		flag.Parse()
	}
	for _, name := range []string{"test.list", "test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return false
		}
	}
	return true
}

// Main is the body of a TestMain that returns instead of exiting, so the
// caller's deferred clean-ups run: it starts a topology, hands it to
// setTopology, runs m, closes the topology and returns m's code.
//
// When MariaDB is not installed: with CI=true it prints why and returns 1
// (a failure, never a skip); otherwise it prints a note and returns 0
// without running any test.
func Main(m *testing.M, opts Options, setTopology func(*Topology)) int {
	if !ServersNeeded() {
		return m.Run()
	}
	if _, _, err := Binaries(); err != nil {
		if onCI() {
			fmt.Fprintf(os.Stderr, "lab: MariaDB is required on CI: %v\n", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "lab: %v; skipping MariaDB integration tests (install mariadb-server to run them)\n", err)
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	began := time.Now()
	t, err := Start(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab: start topology: %v\n", err)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "lab: topology of %d servers ready in %s (%s)\n",
			len(t.Servers()), time.Since(began).Round(time.Millisecond), t.Dir)
	}

	// Ctrl-C: shut the servers down cleanly. (A panic or -timeout kills the
	// process; Pdeathsig then takes the servers with it.)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		t.Close()
		fmt.Fprintf(os.Stderr, "lab: %v: servers stopped\n", sig)
		os.Exit(130)
	}()

	setTopology(t)
	code := m.Run()
	signal.Stop(sigs)
	if err := t.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "lab: close: %v\n", err)
	}
	return code
}

// GlobalStatusAll reads a status counter on every server of t, by name.
func (t *Topology) GlobalStatusAll(tb testing.TB, name string) map[string]int64 {
	tb.Helper()
	out := map[string]int64{}
	for _, s := range t.Servers() {
		n, err := s.GlobalStatus(name)
		if err != nil {
			tb.Fatal(err)
		}
		out[s.Name] = n
	}
	return out
}

// makeDirs is a lab's directory (dir, or a new temporary one named after
// prefix) and the directory for its unix sockets: the same one, unless a
// socket path as long as longestSocket would pass the ~108 bytes a unix
// socket path may have. remove lists the directories made here, which the
// lab removes when it closes.
func makeDirs(dir, prefix, longestSocket string) (labDir, sockDir string, remove []string, err error) {
	if dir == "" {
		if labDir, err = os.MkdirTemp("", prefix); err != nil {
			return "", "", nil, err
		}
		remove = append(remove, labDir)
	} else {
		if labDir, err = filepath.Abs(dir); err != nil {
			return "", "", nil, err
		}
		if err := os.MkdirAll(labDir, 0o755); err != nil {
			return "", "", nil, err
		}
	}
	sockDir = labDir
	if len(filepath.Join(sockDir, longestSocket)) > 100 {
		if sockDir, err = os.MkdirTemp("", "lab"); err != nil {
			return "", "", remove, err
		}
		remove = append(remove, sockDir)
	}
	return labDir, sockDir, remove, nil
}
