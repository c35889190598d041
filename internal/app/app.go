// Package app wires Sluice's parts together for `sluice serve`: the
// monitor, the router, the proxy, the bundled broker and the admin server.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"gopkg.in/yaml.v3"

	"github.com/sluice-proxy/sluice/filter"
	"github.com/sluice-proxy/sluice/internal/admin"
	"github.com/sluice-proxy/sluice/internal/audit"
	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/kafkaout"
	"github.com/sluice-proxy/sluice/logbroker"
	"github.com/sluice-proxy/sluice/monitor"
	"github.com/sluice-proxy/sluice/proxy"
	"github.com/sluice-proxy/sluice/router"
)

// NewLogger builds Sluice's logger from the log section.
func NewLogger(cfg config.Log, level *slog.LevelVar) *slog.Logger {
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// Serve runs Sluice until SIGTERM or SIGINT, reloading on SIGHUP.
func Serve(cfgFile string) error {
	cfg, err := config.Load(cfgFile)
	if err != nil {
		return err
	}
	var level slog.LevelVar
	log := NewLogger(cfg.Log, &level).With("proxy", cfg.Name)
	setMaxProcs(cfg.MaxProcs)
	applySchedSlice(cfg.SchedSlice, log)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var broker *logbroker.Broker
	if cfg.Broker.Enabled {
		broker, err = logbroker.New(cfg.Broker, log.With("component", "broker"))
		if err != nil {
			return fmt.Errorf("start bundled broker: %w", err)
		}
		reg.MustRegister(broker.Collector())
		ln, err := net.Listen("tcp", cfg.Broker.Listen)
		if err != nil {
			broker.Close()
			return fmt.Errorf("broker.listen %s: %w", cfg.Broker.Listen, err)
		}
		// Not derived from ctx: the broker outlives everything that
		// produces to it, and stops in its own deferred call.
		bctx, bcancel := context.WithCancel(context.Background())
		brokerDone := make(chan struct{})
		go func() {
			defer close(brokerDone)
			if err := broker.Serve(bctx, ln); err != nil {
				log.Error("bundled broker stopped", "err", err)
			}
		}()
		// The broker stops last, after everything that produces to it.
		defer func() {
			bcancel()
			<-brokerDone
			if err := broker.Close(); err != nil {
				log.Error("closing bundled broker", "err", err)
			}
		}()
	}

	mon := monitor.New(monitorConfig(cfg), log.With("component", "monitor"))
	reg.MustRegister(mon)
	if brokers := producerBrokers(cfg); len(brokers) > 0 {
		events, err := kafkaout.New(kafkaout.Config{Brokers: brokers, Name: "events", QueueSize: 10000, Local: localBroker(cfg, broker)}, log.With("component", "events"))
		if err != nil {
			return err
		}
		reg.MustRegister(events.Collectors()...)
		defer events.Close()
		name := cfg.Name
		mon.OnEvent = func(ev monitor.Event) {
			rec := struct {
				Type  string `json:"type"`
				Proxy string `json:"proxy"`
				monitor.Event
			}{"topology", name, ev}
			if b, err := json.Marshal(rec); err == nil {
				events.Send(EventsTopic, []byte(ev.Server), b)
			}
		}
	}
	monCtx, monCancel := context.WithCancel(ctx)
	defer monCancel()
	wg.Go(func() { mon.Run(monCtx) })

	accounts := proxy.NewAccounts(proxy.ServerAccountSource(func() []string { return serverAddrs(mon) },
		cfg.ServiceUser.User, cfg.ServiceUser.Password, cfg.ConnectTimeout), cfg.UsersRefreshInterval, log)
	accounts.SetConfigAccounts(configAccounts(cfg))
	rt := router.New(mon, routerConfig(cfg))
	srv := proxy.NewServer(proxyConfig(cfg), accounts, rt, reg, log)
	chain, err := filter.NewChain(cfg.Filters)
	if err != nil {
		return err // validated with the config: cannot happen
	}
	srv.SetFilters(chain)
	var genlog *filter.Genlog
	if cfg.Genlog.Enabled {
		pc := kafkaout.Config{Brokers: producerBrokers(cfg), Name: "genlog", Local: localBroker(cfg, broker),
			QueueSize: cfg.Genlog.QueueSize, Block: cfg.Genlog.OnFull == "block", Chain: true, ChainOwner: cfg.Name}
		if cfg.Genlog.OnFull == "spill" {
			pc.SpillFile, pc.SpillMaxBytes = cfg.Genlog.SpillFile, cfg.Genlog.SpillMaxBytes
			if err := os.MkdirAll(filepath.Dir(pc.SpillFile), 0o700); err != nil {
				return fmt.Errorf("genlog.spill_file %s: %w", pc.SpillFile, err)
			}
		}
		producer, err := kafkaout.New(pc, log.With("component", "genlog"))
		if err != nil {
			return fmt.Errorf("genlog.spill_file: %w", err)
		}
		reg.MustRegister(producer.Collectors()...)
		// Closed after the proxy drained, so the last sessions' records go out.
		defer producer.Close()
		genlog = filter.NewGenlog(genlogConfig(cfg), producer)
		srv.SetGenlog(genlog)
	}

	ln, err := listenClients(ctx, cfg)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if cfg.ListenReusePort && reusePort == nil {
		log.Warn("listen_reuseport not applied: only Linux spreads a port's connections over the processes sharing it; another instance on this port will not start")
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("admin_listen %s: %w", cfg.AdminListen, err)
	}
	health := func() (bool, string) {
		if _, err := rt.Primary(); err != nil {
			return false, err.Error()
		}
		return true, "serving"
	}
	srv.SetDigests(filter.NewDigests(cfg.QueryDigests))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_query_digests", Help: "Statement shapes in the digest table (at most query_digests).",
	}, func() float64 { return float64(srv.Digests().Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_query_digests_evicted", Help: "Statement shapes evicted from the digest table since it was created (start or resize).",
		}, func() float64 { return float64(srv.Digests().Evicted()) }))
	// running is the config in force, for GET /v1/config and reloads.
	var running atomic.Pointer[config.Config]
	running.Store(cfg)
	var reloadMu sync.Mutex
	// reload applies the config file anew, from SIGHUP or POST /v1/reload;
	// a config that does not load is refused and the running one kept.
	reload := func() error {
		reloadMu.Lock()
		defer reloadMu.Unlock()
		next, err := config.Load(cfgFile)
		if err != nil {
			log.Error("config reload refused; keeping the running config", "err", err)
			return err
		}
		_ = level.UnmarshalText([]byte(next.Log.Level))
		setMaxProcs(next.MaxProcs)
		applySchedSlice(next.SchedSlice, log)
		srv.SetConfig(proxyConfig(next))
		if genlog != nil {
			genlog.SetConfig(genlogConfig(next))
		}
		rt.SetConfig(routerConfig(next))
		accounts.SetConfigAccounts(configAccounts(next))
		// Servers added or removed: the monitor polls the new list before
		// the reload returns, so routing sees it at once.
		rctx, rcancel := context.WithTimeout(context.Background(), 2*cfg.Monitor.Timeout+time.Second)
		mon.SetServers(rctx, monitorConfig(next).Servers)
		rcancel()
		if chain, err := filter.NewChain(next.Filters); err == nil {
			srv.SetFilters(chain)
		}
		if next.QueryDigests != running.Load().QueryDigests {
			srv.SetDigests(filter.NewDigests(next.QueryDigests))
		}
		running.Store(next)
		log.Info("config reloaded", "file", cfgFile)
		return nil
	}
	api := admin.API{Health: health, Gatherer: reg, Monitor: mon, Sessions: srv.SessionList, Digests: srv.Digests,
		Reload: reload, Token: cfg.AdminToken, Stats: srv.Stats, Config: func() any { return configView(running.Load().Redacted()) }}
	if genlog != nil {
		api.AuditTail = func(ctx context.Context, where string, since time.Duration, emit func([]byte)) error {
			w, err := filter.ParseWhere(where)
			if err != nil {
				return err
			}
			return audit.Read(ctx, audit.Options{Brokers: producerBrokers(cfg), Topic: cfg.Genlog.Topic,
				Since: since, Where: w, Follow: true}, emit)
		}
	}
	adminSrv := &http.Server{Handler: admin.Handler(api), ReadHeaderTimeout: 5 * time.Second}
	wg.Go(func() {
		if err := adminSrv.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server stopped", "err", err)
		}
	})

	// Accounts load in the background once a server answers: Sluice starts
	// even while the servers are still coming up.
	wg.Go(func() {
		wctx, wcancel := context.WithTimeout(monCtx, time.Minute)
		defer wcancel()
		if _, err := mon.WaitPrimary(wctx); err != nil {
			log.Warn("no primary yet; accounts will load at the first login", "err", err)
			return
		}
		if err := accounts.Load(monCtx); err != nil {
			log.Warn("loading client accounts failed; retrying at the first login", "err", err)
		}
	})

	proxyCtx, proxyCancel := context.WithCancel(ctx)
	defer proxyCancel()
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- srv.Serve(proxyCtx, ln) })
	// Again for the threads started meanwhile from one not yet done.
	applySchedSlice(cfg.SchedSlice, log)
	log.Info("sluice serving", "listen", ln.Addr().String(), "admin", adminLn.Addr().String(), "router", cfg.Router.Type)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	for {
		select {
		case err := <-serveErr:
			return fmt.Errorf("client listener stopped: %w", err)
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				_ = reload() // a refused config is logged; the running one stays
				continue
			}
			log.Info("draining", "signal", sig.String(), "sessions", srv.Sessions(), "timeout", cfg.DrainTimeout)
			proxyCancel() // stop accepting
			dctx, dcancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
			if err := srv.Shutdown(dctx); err != nil {
				log.Warn("drain incomplete", "err", err)
			}
			dcancel()
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = adminSrv.Shutdown(sctx)
			scancel()
			cancel()
			log.Info("stopped")
			return nil
		}
	}
}

// listenClients opens the client listener, with SO_REUSEPORT when
// listen_reuseport asks for it (on Linux: see reusePort).
func listenClients(ctx context.Context, cfg *config.Config) (net.Listener, error) {
	lc := net.ListenConfig{}
	if cfg.ListenReusePort {
		lc.Control = reusePort
	}
	return lc.Listen(ctx, "tcp", cfg.Listen)
}

// configView is the config as plain data with its YAML keys, for JSON.
func configView(cfg *config.Config) any {
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return map[string]string{"error": err.Error()}
	}
	var v map[string]any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return map[string]string{"error": err.Error()}
	}
	return v
}

// applySchedSlice applies sched_slice (nil: the default) and says what came
// of it.
func applySchedSlice(d *time.Duration, log *slog.Logger) {
	slice := config.DefaultSchedSlice
	if d != nil {
		slice = *d
	}
	n, err := setSchedSlice(slice)
	switch {
	case err != nil:
		log.Warn("sched_slice not applied; threads keep the kernel's default slice (set sched_slice: 0s to stop trying)", "err", err)
	case slice > 0 && n == 0:
		log.Info("sched_slice has no effect: this kernel has no per-task slices (Linux 6.12 and later)", "sched_slice", slice)
	case slice > 0:
		log.Debug("sched_slice applied", "sched_slice", slice, "threads", n)
	}
}

// setMaxProcs applies max_procs; 0 restores Go's default.
func setMaxProcs(n int) {
	if n <= 0 {
		n = runtime.NumCPU()
	}
	runtime.GOMAXPROCS(n)
}

func genlogConfig(cfg *config.Config) filter.GenlogConfig {
	return filter.GenlogConfig{Topic: cfg.Genlog.Topic, Proxy: cfg.Name, MaxQueryBytes: cfg.Genlog.MaxQueryBytes,
		RedactLiterals: cfg.Genlog.Redact == "literals",
		IncludeUsers:   cfg.Genlog.Include.Users, IncludeDBs: cfg.Genlog.Include.Databases,
		ExcludeUsers: cfg.Genlog.Exclude.Users, ExcludeDBs: cfg.Genlog.Exclude.Databases,
		Sample: cfg.Genlog.Sample, Params: cfg.Genlog.Params, GTID: cfg.Genlog.GTID}
}

// EventsTopic receives one JSON record per topology event.
const EventsTopic = "sluice.events"

// producerBrokers is where Sluice's own records go: genlog.brokers, or the
// bundled broker.
func producerBrokers(cfg *config.Config) []string {
	if len(cfg.Genlog.Brokers) > 0 {
		return cfg.Genlog.Brokers
	}
	if cfg.Broker.Enabled {
		if cfg.Broker.AdvertisedListen != "" {
			return []string{cfg.Broker.AdvertisedListen}
		}
		return []string{cfg.Broker.Listen}
	}
	return nil
}

// localBroker is the bundled broker when Sluice's records go to it: the
// producers then append in process rather than over TCP.
func localBroker(cfg *config.Config, broker *logbroker.Broker) *logbroker.Broker {
	if len(cfg.Genlog.Brokers) > 0 {
		return nil
	}
	return broker
}

func monitorConfig(cfg *config.Config) monitor.Config {
	mc := monitor.Config{
		User: cfg.ServiceUser.User, Password: cfg.ServiceUser.Password,
		Interval: cfg.Monitor.Interval, Timeout: cfg.Monitor.Timeout,
		MaxLag: cfg.Router.MaxReplicationLag, LagHysteresis: cfg.Monitor.LagHysteresis,
		Type: cfg.Monitor.Type, PreferredWriter: cfg.Monitor.PreferredWriter,
		Failover: monitor.FailoverConfig{
			AutoFailover: cfg.Monitor.AutoFailover, Timeout: cfg.Monitor.FailoverTimeout, AutoRejoin: cfg.Monitor.AutoRejoin,
			ReplicationUser: cfg.Monitor.ReplicationUser.User, ReplicationPassword: cfg.Monitor.ReplicationUser.Password,
		},
	}
	if cfg.Monitor.Heartbeat {
		mc.HeartbeatTable = cfg.Monitor.HeartbeatTable
	}
	for _, s := range cfg.Servers {
		mc.Servers = append(mc.Servers, monitor.ServerConfig{Name: s.Name, Address: s.Address, Weight: s.Weight})
	}
	return mc
}

func proxyConfig(cfg *config.Config) proxy.Config {
	pc := proxy.Config{
		Name: cfg.Name, ServerVersion: cfg.ServerVersion, MaxConnections: cfg.MaxConnections,
		MaxAllowedPacket: cfg.MaxAllowedPacket, ConnectTimeout: cfg.ConnectTimeout,
		ClassifierCacheSize: cfg.Router.ClassifierCacheSize, RequireTLS: cfg.TLS.Require,
		MaxUserConnections: cfg.MaxUserConnections, UserMaxConnections: cfg.UserMaxConnections,
		ClientIdleTimeout: cfg.ClientIdleTimeout, BackendReadTimeout: cfg.BackendReadTimeout,
		Recovery: proxy.RecoveryConfig{PrimaryWait: cfg.Router.PrimaryWait, TransactionReplay: cfg.Router.TransactionReplay,
			TransactionReplayMaxSize:         cfg.Router.TransactionReplayMaxSize,
			TransactionReplayRetryOnDeadlock: cfg.Router.TransactionReplayRetryOnDeadlock,
			TransactionReplayAttempts:        cfg.Router.TransactionReplayAttempts},
	}
	// Validated with the config; files that changed since are re-read at
	// the next reload.
	pc.TLS, _ = cfg.TLS.ClientConfig()
	pc.BackendTLS, _ = cfg.TLS.BackendConfig()
	return pc
}

func routerConfig(cfg *config.Config) router.Config {
	return router.Config{Type: cfg.Router.Type, MaxReplicationLag: cfg.Router.MaxReplicationLag,
		Balance: cfg.Router.Balance, Target: cfg.Router.Target,
		CausalReads: cfg.Router.CausalReads, CausalReadsTimeout: cfg.Router.CausalReadsTimeout,
		MaxReplicaConnections: cfg.Router.MaxReplicaConnections, PrimaryReads: cfg.Router.PrimaryReads}
}

func configAccounts(cfg *config.Config) []proxy.Account {
	out := make([]proxy.Account, 0, len(cfg.Accounts))
	for _, a := range cfg.Accounts {
		out = append(out, proxy.NewConfigAccount(a.User, a.Host, a.Password))
	}
	return out
}

// serverAddrs lists servers to load accounts from: the primary first, then
// the others that are up.
func serverAddrs(mon *monitor.Monitor) []string {
	snap := mon.Snapshot()
	var addrs []string
	if p, ok := snap.PrimaryServer(); ok {
		addrs = append(addrs, p.Address)
	}
	for i, s := range snap.Servers {
		if i != snap.Primary && s.Up {
			addrs = append(addrs, s.Address)
		}
	}
	return addrs
}
