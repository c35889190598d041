package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Galera is a MariaDB Galera cluster on loopback: every node is a Server
// (Stop, Kill, Start, Pause work as for the replication topology; a node
// started again rejoins the running cluster, by IST when its gap is still in
// the donor's gcache, else by a full rsync SST).
//
// Node 1 bootstraps the cluster (--wsrep-new-cluster) on its first start
// only; afterwards every node joins whatever members are up. A cluster whose
// nodes are all down cannot be started again.
type Galera struct {
	Dir   string
	Nodes []*Server

	provider string // libgalera_smm.so
	binDir   string // holds the SST script (see sstScript)
	mu       sync.Mutex
	members  []*galeraNode

	removeDirs []string
	closeOnce  sync.Once
	closeErr   error
}

// GaleraOptions configures StartGalera.
type GaleraOptions struct {
	Nodes int       // default 3
	Dir   string    // default: os.MkdirTemp; removed by Close if StartGalera created it
	Log   io.Writer // where mariadbd stdout/stderr go (most output is in <Dir>/<name>.err)
}

// galeraNode is the wsrep side of one node.
type galeraNode struct {
	g         *Galera
	s         *Server
	gmcast    int  // group communication port (gmcast.listen_addr)
	ist       int  // IST receiver port
	sst       int  // SST receiver port (the joiner's rsync daemon)
	bootstrap bool // --wsrep-new-cluster on the next start
}

// sstMethod is the wsrep_sst_method of every node: wsrep_sst_<method> is
// written to Galera.binDir, which comes first in the nodes' PATH.
const sstMethod = "labrsync"

// sstScript runs wsrep_sst_rsync. When it runs as root (as the lab's
// mariadbd usually does), the joiner's rsync daemon would switch to the
// "nobody" user, which cannot enter the root-owned datadir ("cannot stat
// destination "." (in rsync_sst): Permission denied"), and every state
// transfer, even an IST, would fail; so the daemon keeps uid and gid 0.
const sstScript = `#!/usr/bin/env bash
# Written by sluice internal/testenv/lab: wsrep_sst_rsync whose rsync daemon stays root.
if [ "$(id -u)" = 0 ]; then
	rsync() {
		local a
		for a in "$@"; do
			# the daemon runs in the background: exec keeps the pid the script waits for
			if [ "$a" = --daemon ]; then exec rsync "$@" --dparam=uid=0 --dparam=gid=0; fi
		done
		command rsync "$@"
	}
	export -f rsync
fi
exec %s "$@"
`

// GaleraProvider locates libgalera_smm.so: $LAB_GALERA_PROVIDER when set,
// else the usual locations.
func GaleraProvider() (string, error) {
	if p := os.Getenv("LAB_GALERA_PROVIDER"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("LAB_GALERA_PROVIDER: %w", err)
		}
		return p, nil
	}
	for _, p := range []string{
		"/usr/lib/galera/libgalera_smm.so", // Debian, Ubuntu (galera-4)
		"/usr/lib/libgalera_smm.so",
		"/usr/lib64/galera-4/libgalera_smm.so", // RHEL, Fedora
		"/usr/lib64/galera/libgalera_smm.so",
		"/usr/lib/galera-4/libgalera_smm.so",
		"/usr/local/lib/libgalera_smm.so",
		"/opt/homebrew/lib/libgalera_smm.so",
	} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("galera: libgalera_smm.so not found (install galera-4 and rsync: apt-get install galera-4 rsync)")
}

func sstRsyncScript() string {
	return lookPath("wsrep_sst_rsync", "/usr/bin/wsrep_sst_rsync", "/usr/local/mysql/bin/wsrep_sst_rsync")
}

// GaleraAvailable returns nil when StartGalera can run here (mariadbd, the
// Galera library, rsync and wsrep_sst_rsync are installed), else an error
// saying what to install.
func GaleraAvailable() error {
	if _, _, err := Binaries(); err != nil {
		return fmt.Errorf("galera: %w (install mariadb-server)", err)
	}
	if _, err := GaleraProvider(); err != nil {
		return err
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		return errors.New("galera: rsync not found in PATH (install rsync)")
	}
	if sstRsyncScript() == "" {
		return errors.New("galera: wsrep_sst_rsync not found (it comes with mariadb-server)")
	}
	return nil
}

// StartGalera creates opts.Nodes nodes from one mariadb-install-db
// template, bootstraps the cluster on node 1, creates the lab accounts and
// databases there (they reach the other nodes through Galera: monitor,
// app, sbtest, ... as in the replication topology), starts the other nodes,
// which join with an rsync SST, and waits until every node is Synced.
func StartGalera(ctx context.Context, opts GaleraOptions) (_ *Galera, err error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 3
	}
	if err := GaleraAvailable(); err != nil {
		return nil, err
	}
	mariadbd, installDB, err := Binaries()
	if err != nil {
		return nil, err
	}
	provider, err := GaleraProvider()
	if err != nil {
		return nil, err
	}

	g := &Galera{provider: provider}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	var sockDir string
	g.Dir, sockDir, g.removeDirs, err = makeDirs(opts.Dir, "sluice-galera-", "node99.sock")
	if err != nil {
		return nil, err
	}

	names := make([]string, opts.Nodes)
	for i := range names {
		names[i] = "node" + strconv.Itoa(i+1)
	}
	// A re-used Dir starts from scratch.
	for _, n := range append([]string{"template", "bin"}, names...) {
		for _, p := range []string{n, n + ".err", n + ".pid", n + ".sock"} {
			if err := os.RemoveAll(filepath.Join(g.Dir, p)); err != nil {
				return nil, err
			}
		}
	}

	g.binDir = filepath.Join(g.Dir, "bin")
	if err := os.MkdirAll(g.binDir, 0o755); err != nil {
		return nil, err
	}
	script := fmt.Sprintf(sstScript, sstRsyncScript())
	if err := os.WriteFile(filepath.Join(g.binDir, "wsrep_sst_"+sstMethod), []byte(script), 0o755); err != nil {
		return nil, err
	}

	template := filepath.Join(g.Dir, "template")
	if err := installTemplate(ctx, installDB, template, opts.Log); err != nil {
		return nil, err
	}

	for i, n := range names {
		s := &Server{
			Name:     n,
			Host:     "127.0.0.1",
			ServerID: i + 1,
			DataDir:  filepath.Join(g.Dir, n),
			Socket:   filepath.Join(sockDir, n+".sock"),
			PidFile:  filepath.Join(g.Dir, n+".pid"),
			ErrorLog: filepath.Join(g.Dir, n+".err"),
			bin:      mariadbd,
			log:      opts.Log,
		}
		s.galera = &galeraNode{g: g, s: s, bootstrap: i == 0}
		g.Nodes = append(g.Nodes, s)
		g.members = append(g.members, s.galera)
	}
	if err := g.pickPorts(g.members...); err != nil {
		return nil, err
	}

	errs := make([]error, len(g.Nodes))
	var wg sync.WaitGroup
	for i, s := range g.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := copyDir(template, s.DataDir); err != nil {
				errs[i] = fmt.Errorf("%s: copy template: %w", s.Name, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	os.RemoveAll(template)

	// Node 1 alone: a new cluster.
	first := g.Nodes[0]
	if err := g.startNew(ctx, first); err != nil {
		return nil, err
	}
	g.mu.Lock()
	first.galera.bootstrap = false // from now on it joins like the others
	g.mu.Unlock()
	if err := g.waitSynced(ctx, []*Server{first}); err != nil {
		return nil, err
	}
	for _, q := range setupSQL {
		if err := first.Exec(ctx, q); err != nil {
			return nil, err
		}
	}

	// The others join (state transfer from a synced member).
	rest := g.Nodes[1:]
	errs = make([]error, len(rest))
	for i, s := range rest {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = g.startNew(ctx, s)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := g.WaitSynced(ctx); err != nil {
		return nil, err
	}
	return g, nil
}

// pickPorts gives each node four ports free a moment ago and distinct from
// every other node's.
func (g *Galera) pickPorts(nodes ...*galeraNode) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	taken := map[int]bool{}
	for _, m := range g.members {
		taken[m.s.Port], taken[m.gmcast], taken[m.ist], taken[m.sst] = true, true, true, true
	}
	next := func() (int, error) {
		for range 20 {
			p, err := FreePort()
			if err != nil {
				return 0, err
			}
			if !taken[p] {
				taken[p] = true
				return p, nil
			}
		}
		return 0, errors.New("no free port")
	}
	for _, m := range nodes {
		for _, p := range []*int{&m.s.Port, &m.gmcast, &m.ist, &m.sst} {
			v, err := next()
			if err != nil {
				return err
			}
			*p = v
		}
	}
	return nil
}

// startNew starts a node for the first time, with new ports if one of them
// was taken by someone else in the meantime.
func (g *Galera) startNew(ctx context.Context, s *Server) error {
	for attempt := 0; ; attempt++ {
		err := s.Start(ctx)
		if err == nil || !errors.Is(err, errPortInUse) || attempt >= 3 {
			return err
		}
		if err := g.pickPorts(s.galera); err != nil {
			return err
		}
	}
}

// args are the mariadbd options of a Galera node (after the common ones).
func (n *galeraNode) args() []string {
	g := n.g
	g.mu.Lock()
	defer g.mu.Unlock()
	var peers []string
	for _, m := range g.members {
		peers = append(peers, "127.0.0.1:"+strconv.Itoa(m.gmcast))
	}
	a := []string{
		"--wsrep-on=ON",
		"--wsrep-provider=" + g.provider,
		"--wsrep-cluster-name=sluice-lab",
		"--wsrep-cluster-address=gcomm://" + strings.Join(peers, ","),
		"--wsrep-node-name=" + n.s.Name,
		"--wsrep-node-address=127.0.0.1",
		"--wsrep-node-incoming-address=" + n.s.Addr(),
		"--wsrep-sst-method=" + sstMethod,
		"--wsrep-sst-receive-address=127.0.0.1:" + strconv.Itoa(n.sst),
		"--wsrep-provider-options=" + strings.Join([]string{
			"gmcast.listen_addr=tcp://127.0.0.1:" + strconv.Itoa(n.gmcast),
			"ist.recv_addr=127.0.0.1:" + strconv.Itoa(n.ist),
			"gcache.size=32M",
			// a killed node leaves the view after ~3s instead of ~5-15s
			"evs.keepalive_period=PT0.5S",
			"evs.inactive_check_period=PT0.5S",
			"evs.suspect_timeout=PT3S",
			"evs.inactive_timeout=PT6S",
			"evs.install_timeout=PT6S",
		}, "; "),
		"--innodb-autoinc-lock-mode=2",
	}
	if n.bootstrap {
		a = append(a, "--wsrep-new-cluster")
	}
	return a
}

// env puts the SST script first in PATH.
func (n *galeraNode) env() []string {
	return append(os.Environ(), "PATH="+n.g.binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// WsrepStatus returns the wsrep_% status variables of s (name -> value),
// read as root over the unix socket.
func WsrepStatus(ctx context.Context, s *Server) (map[string]string, error) {
	db, err := s.RootDB()
	if err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL STATUS LIKE 'wsrep%'")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Name, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		out[strings.ToLower(k)] = v
	}
	return out, rows.Err()
}

// WaitSynced waits until every running node is Synced (wsrep_local_state
// 4, wsrep_ready ON) in one primary component whose size is the number of
// running nodes.
func (g *Galera) WaitSynced(ctx context.Context) error {
	var running []*Server
	for _, s := range g.Nodes {
		if s.Running() {
			running = append(running, s)
		}
	}
	if len(running) == 0 {
		return errors.New("galera: no node is running")
	}
	return g.waitSynced(ctx, running)
}

func (g *Galera) waitSynced(ctx context.Context, nodes []*Server) error {
	want := strconv.Itoa(len(nodes))
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		var last []string
		for _, s := range nodes {
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := WsrepStatus(qctx, s)
			cancel()
			switch {
			case err != nil:
				last = append(last, err.Error())
			case st["wsrep_local_state"] != "4" || st["wsrep_ready"] != "ON" ||
				st["wsrep_cluster_status"] != "Primary" || st["wsrep_cluster_size"] != want:
				last = append(last, fmt.Sprintf("%s: local_state=%s (%s) ready=%s cluster_status=%s cluster_size=%s",
					s.Name, st["wsrep_local_state"], st["wsrep_local_state_comment"], st["wsrep_ready"],
					st["wsrep_cluster_status"], st["wsrep_cluster_size"]))
			}
		}
		if len(last) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("galera: waiting for %s synced nodes: %w (%s)", want, ctx.Err(), strings.Join(last, "; "))
		case <-t.C:
		}
	}
}

// Close stops every node (SIGTERM, SIGKILL after 15s), closes the root pools
// and removes Dir if StartGalera created it. Safe to call more than once.
func (g *Galera) Close() error {
	g.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		errs := make([]error, len(g.Nodes))
		var wg sync.WaitGroup
		for i, s := range g.Nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.closeDB()
				errs[i] = s.Stop(ctx)
			}()
		}
		wg.Wait()
		for _, d := range g.removeDirs {
			if err := os.RemoveAll(d); err != nil {
				errs = append(errs, err)
			}
		}
		g.closeErr = errors.Join(errs...)
	})
	return g.closeErr
}
