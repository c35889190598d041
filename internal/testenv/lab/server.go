// Package lab starts a real MariaDB topology (one primary plus GTID replicas
// on loopback) for integration tests and for people (`make lab`).
//
// Every mariadbd is a child of the current process, started with
// Pdeathsig=SIGKILL so it dies together with the test binary even when a
// test panics or `go test -timeout` fires. Pdeathsig is delivered when the
// OS thread that forked the child exits, not the process, so all children
// are forked from one goroutine that is locked to its OS thread and never
// returns (see spawn). The servers also get their own process group, so a
// Ctrl-C in a terminal reaches only the Go process, which then shuts them
// down cleanly. (Off Linux the children get no Pdeathsig: see DieWithParent.)
package lab

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Server is one mariadbd process of a topology.
type Server struct {
	Name     string // "primary", "replica1", ...
	Host     string // 127.0.0.1
	Port     int
	ServerID int
	DataDir  string
	Socket   string
	PidFile  string
	ErrorLog string // mariadbd --log-error file

	bin     string
	replica bool
	log     io.Writer
	galera  *galeraNode // non-nil for a Galera node (galera.go)
	extra   []string    // more mariadbd options (Options.ExtraArgs)
	maxConn int         // --max-connections (Options.MaxConnections)

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process has exited
	waitErr error

	dbMu sync.Mutex
	db   *sql.DB
}

// Addr returns "127.0.0.1:port".
func (s *Server) Addr() string {
	return net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
}

// DSN returns a go-sql-driver/mysql DSN over TCP for the given account,
// with interpolateParams=false and a 5s dial timeout.
func (s *Server) DSN(user, password, db string) string {
	cfg := mysql.NewConfig()
	cfg.User = user
	cfg.Passwd = password
	cfg.Net = "tcp"
	cfg.Addr = s.Addr()
	cfg.DBName = db
	cfg.Timeout = 5 * time.Second
	cfg.InterpolateParams = false
	return cfg.FormatDSN()
}

// socketDSN is root over the unix socket (unix_socket authentication).
func (s *Server) socketDSN() string {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "unix"
	cfg.Addr = s.Socket
	cfg.Timeout = 2 * time.Second
	return cfg.FormatDSN()
}

// RootDB returns a pool connected as root over the unix socket. It is
// cached: every call returns the same *sql.DB, which stays usable across
// Stop/Start (dead connections are discarded by database/sql). It is closed
// by Topology.Close.
func (s *Server) RootDB() (*sql.DB, error) {
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.db != nil {
		return s.db, nil
	}
	db, err := sql.Open("mysql", s.socketDSN())
	if err != nil {
		return nil, err
	}
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(30 * time.Second)
	s.db = db
	return db, nil
}

// dropIdle closes pooled root connections while the server is still alive
// (called before SIGTERM/SIGKILL), so the next query dials the new process
// instead of tripping over a dead socket, and the driver logs nothing.
func (s *Server) dropIdle() {
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.db != nil {
		s.db.SetMaxIdleConns(0)
		s.db.SetMaxIdleConns(4)
	}
}

func (s *Server) closeDB() {
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.db != nil {
		s.db.Close()
		s.db = nil
	}
}

// Exec runs query as root.
func (s *Server) Exec(ctx context.Context, query string, args ...any) error {
	db, err := s.RootDB()
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, query, args...); err != nil {
		return fmt.Errorf("%s: %s: %w", s.Name, query, err)
	}
	return nil
}

// tmpDir is the server's own temporary directory, beside its datadir.
func (s *Server) tmpDir() string { return s.DataDir + ".tmp" }

func (s *Server) args() []string {
	maxConn := s.maxConn
	if maxConn == 0 {
		maxConn = DefaultMaxConnections
	}
	a := []string{
		"--no-defaults",
		"--user=root",
		"--datadir=" + s.DataDir,
		"--socket=" + s.Socket,
		"--port=" + strconv.Itoa(s.Port),
		"--bind-address=" + s.Host,
		"--pid-file=" + s.PidFile,
		"--log-error=" + s.ErrorLog,
		"--server-id=" + strconv.Itoa(s.ServerID),
		"--binlog-format=ROW",
		"--skip-name-resolve",
		"--innodb-buffer-pool-size=64M",
		"--innodb-log-file-size=48M",
		"--innodb-flush-log-at-trx-commit=2",
		"--innodb-use-native-aio=0",
		"--performance-schema=OFF",
		"--max-connections=" + strconv.Itoa(maxConn),
		"--max-allowed-packet=64M",
		// Each server its own: temporary tables of servers sharing /tmp collide.
		"--tmpdir=" + s.tmpDir(),
	}
	a = append(a, s.extra...)
	if s.galera != nil {
		return append(a, s.galera.args()...)
	}
	a = append(a,
		"--log-bin="+s.Name+"-bin",
		"--log-slave-updates",
		"--gtid-strict-mode=1",
		"--sync-binlog=0",
		"--slave-net-timeout=10",
	)
	if s.replica {
		a = append(a,
			"--read-only=1",
			"--relay-log="+s.Name+"-relay-bin",
			"--relay-log-recovery=1",
		)
	}
	return a
}

// running reports whether the process is alive, and its done channel.
func (s *Server) running() (*exec.Cmd, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil, nil
	}
	select {
	case <-s.done:
		return nil, nil
	default:
		return s.cmd, s.done
	}
}

var errPortInUse = errors.New("port already in use")

// Start starts mariadbd (again) with the same datadir and port and waits
// until it accepts connections or ctx ends. once holds options for this start
// only (an old primary restarting as a replica: --init-rpl-role=SLAVE).
func (s *Server) Start(ctx context.Context, once ...string) error {
	if cmd, _ := s.running(); cmd != nil {
		return fmt.Errorf("%s: already running (pid %d)", s.Name, cmd.Process.Pid)
	}
	errOffset := fileSize(s.ErrorLog)
	if err := os.MkdirAll(s.tmpDir(), 0o700); err != nil {
		return err
	}
	cmd := exec.Command(s.bin, append(s.args(), once...)...)
	cmd.Dir = s.DataDir
	if s.galera != nil {
		cmd.Env = s.galera.env()
	}
	if s.log != nil {
		cmd.Stdout = s.log
		cmd.Stderr = s.log
	}
	cmd.SysProcAttr = DieWithParent(&syscall.SysProcAttr{Setpgid: true}, syscall.SIGKILL)
	if err := Spawn(cmd); err != nil {
		return fmt.Errorf("%s: start mariadbd: %w", s.Name, err)
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done, s.waitErr = cmd, done, nil
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(done)
	}()

	if err := s.waitReady(ctx, done); err != nil {
		tail := readFrom(s.ErrorLog, errOffset)
		select {
		case <-done:
		default:
			s.Kill()
		}
		if bytes.Contains(tail, []byte("Address already in use")) {
			return fmt.Errorf("%s: %w: %d", s.Name, errPortInUse, s.Port)
		}
		return fmt.Errorf("%s: %w\n--- %s ---\n%s", s.Name, err, s.ErrorLog, lastLines(tail, 15))
	}
	return nil
}

func (s *Server) waitReady(ctx context.Context, done chan struct{}) error {
	db, err := s.RootDB()
	if err != nil {
		return err
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	pid := []byte(strconv.Itoa(s.Pid()))
	last := errors.New("pid file not written yet")
	for {
		// mariadbd writes its pid file once it is about to accept
		// connections; pinging before that only produces driver noise.
		if b, err := os.ReadFile(s.PidFile); err == nil && bytes.Equal(bytes.TrimSpace(b), pid) {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			last = db.PingContext(pctx)
			cancel()
			if last == nil {
				return nil
			}
		}
		select {
		case <-done:
			s.mu.Lock()
			werr := s.waitErr
			s.mu.Unlock()
			return fmt.Errorf("mariadbd exited during startup: %v", werr)
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last error: %v)", ctx.Err(), last)
		case <-t.C:
		}
	}
}

func (s *Server) signal(sig syscall.Signal) error {
	cmd, _ := s.running()
	if cmd == nil {
		return fmt.Errorf("%s: not running", s.Name)
	}
	return cmd.Process.Signal(sig)
}

// Stop sends SIGTERM and waits for a clean exit. If ctx ends first the
// process is killed with SIGKILL.
func (s *Server) Stop(ctx context.Context) error {
	cmd, done := s.running()
	if cmd == nil {
		return nil
	}
	s.dropIdle()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Process.Signal(syscall.SIGCONT) // in case it is paused
	select {
	case <-done:
		s.mu.Lock()
		err := s.waitErr
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		return nil
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s: SIGTERM: %w; killed", s.Name, ctx.Err())
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (s *Server) Kill() error {
	cmd, done := s.running()
	if cmd == nil {
		return nil
	}
	s.dropIdle()
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: %w", s.Name, err)
	}
	<-done
	return nil
}

// Pause freezes the process with SIGSTOP (connections hang, nothing is refused).
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume continues a paused process with SIGCONT.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

// Running reports whether the mariadbd process is alive.
func (s *Server) Running() bool {
	cmd, _ := s.running()
	return cmd != nil
}

// Pid returns the process id, or 0 when not running.
func (s *Server) Pid() int {
	cmd, _ := s.running()
	if cmd == nil {
		return 0
	}
	return cmd.Process.Pid
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago. It
// is drawn below the kernel's ephemeral range: a port from that range (what
// listening on port 0 gives) can become the local port of any outgoing
// connection on the machine, tests running in parallel make thousands, and
// one took a port between its pick and the process binding it ("address
// already in use").
func FreePort() (int, error) {
	if lo := ephemeralLow(); lo > portsFrom+1000 {
		for range 100 {
			p := portsFrom + rand.IntN(lo-portsFrom)
			if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
				l.Close()
				return p, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portsFrom is the lowest port FreePort draws: above the well-known and
// most registered services' ports.
const portsFrom = 20000

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default 32768 when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return lo
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func readFrom(path string, off int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return b
}

// LastLines is the last n lines of s: the end of a command's output for a
// failure message.
func LastLines(s string, n int) string { return lastLines([]byte(s), n) }

func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// copyDir copies a datadir template (regular files and directories only).
func copyDir(src, dst string) error {
	return filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case fi.IsDir():
			return os.MkdirAll(target, fi.Mode().Perm())
		case fi.Mode().IsRegular():
			return copyFile(path, target, fi.Mode().Perm())
		default:
			return nil
		}
	})
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// GlobalInt reads one numeric global system variable (@@GLOBAL.name) as root.
func (s *Server) GlobalInt(name string) (int64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	db, err := s.RootDB()
	if err != nil {
		return 0, err
	}
	var n int64
	if err := db.QueryRow("SELECT @@GLOBAL." + name).Scan(&n); err != nil {
		return 0, fmt.Errorf("%s: @@GLOBAL.%s: %w", s.Name, name, err)
	}
	return n, nil
}

// checkName allows the name of a variable to be spliced into a statement.
func checkName(name string) error {
	for _, r := range name {
		if !(r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return fmt.Errorf("variable name %q", name)
		}
	}
	return nil
}

// GlobalStatus reads one numeric status counter (SHOW GLOBAL STATUS) as root.
func (s *Server) GlobalStatus(name string) (int64, error) {
	db, err := s.RootDB()
	if err != nil {
		return 0, err
	}
	if err := checkName(name); err != nil {
		return 0, err
	}
	var n int64
	var got string
	// SHOW takes no placeholders; the name was checked above.
	if err := db.QueryRow("SHOW GLOBAL STATUS LIKE '"+name+"'").Scan(&got, &n); err != nil {
		return 0, fmt.Errorf("%s: SHOW GLOBAL STATUS LIKE %q: %w", s.Name, name, err)
	}
	return n, nil
}
