// Package app wires Sluice's parts together for `sluice serve`: the
// monitor, the router, the proxy, the bundled broker and the admin server.
package app

import (
	"context"
	"crypto/tls"
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
	"go.yaml.in/yaml/v3"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/filter"
	"github.com/sluice-proxy/sluice/internal/admin"
	"github.com/sluice-proxy/sluice/internal/buildinfo"
	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/digest"
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
//
// Its components start in the order they depend on each other: the bundled
// broker, the events producer, the monitor, the accounts loader, the genlog
// producer, the admin server, the proxy. However Serve ends (a signal, the
// client listener failing, a startup step failing half-way), they stop in
// the reverse order, each joined before what it uses stops: no component
// outlives what it writes to, and the admin server answers until the
// proxy has drained.
func Serve(cfgFile string) error {
	cfg, err := config.Load(cfgFile)
	if err != nil {
		return err
	}
	var level slog.LevelVar
	log := NewLogger(cfg.Log, &level).With("proxy", cfg.Name)
	setMaxProcs(cfg.MaxProcs)
	applySchedSlice(cfg.SchedSlice, log)

	// Caught from the start, so a SIGTERM while starting stops what has
	// started as any stop does; signal.Stop runs after stopAll, so a second
	// signal does not cut the drain short.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	lc := &lifecycle{log: log}
	defer func() {
		lc.stopAll(context.Background())
		log.Info("stopped")
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfoGauge())

	var broker *logbroker.Broker
	if cfg.Broker.Enabled {
		var closeBroker func() error
		broker, closeBroker, err = openBroker(cfg, log.With("component", "broker"))
		if err != nil {
			return fmt.Errorf("start bundled broker: %w", err)
		}
		ln, err := net.Listen("tcp", cfg.Broker.Listen)
		if err != nil {
			closeBroker()
			return fmt.Errorf("broker.listen %s: %w", cfg.Broker.Listen, err)
		}
		reg.MustRegister(broker.Collector())
		stopServing := goStop(func(ctx context.Context) {
			if err := broker.Serve(ctx, ln); err != nil {
				log.Error("bundled broker stopped", "err", err)
			}
		})
		lc.start("bundled broker", func(ctx context.Context) error {
			_ = stopServing(ctx)
			return closeBroker()
		})
	}

	mon := monitor.New(MonitorSection(cfg), log.With("component", "monitor"))
	reg.MustRegister(mon)
	kafka, err := cfg.Genlog.Kafka(cfg.GenlogBrokers())
	if err != nil {
		return fmt.Errorf("genlog: %w", err)
	}
	// recordEvent sends a record to the events topic, when there is one.
	recordEvent := func(key string, v any) {}
	if len(kafka.Brokers) > 0 {
		events, err := audit.NewProducer(audit.ProducerConfig{Kafka: kafka, Compression: cfg.Genlog.Compression, Name: "events", QueueSize: 10000, Local: localBroker(cfg, broker)}, log.With("component", "events"))
		if err != nil {
			return err
		}
		reg.MustRegister(events.Collectors()...)
		// Closed once the monitor, which sends to it, has returned.
		lc.start("events producer", func(context.Context) error { return events.Close() })
		if cfg.Genlog.Enabled {
			// With the audit trail on, its topics exist from the start.
			if err := createTopics(events, localBroker(cfg, broker) != nil, log, EventsTopic); err != nil {
				return err
			}
		}
		recordEvent = func(key string, v any) {
			if b, err := json.Marshal(v); err == nil {
				events.Send(audit.Record{Topic: EventsTopic, Key: []byte(key), Value: b})
			}
		}
		name := cfg.Name
		mon.OnEvent = func(ev monitor.Event) {
			recordEvent(ev.Server, struct {
				Type  string `json:"type"`
				Proxy string `json:"proxy"`
				monitor.Event
			}{"topology", name, ev})
		}
	}
	lc.start("monitor", goStop(mon.Run))

	// Over TLS with tls.backend, as the sessions' connections: the loader
	// reads password hashes.
	backendTLS, _ := cfg.TLS.BackendConfig() // validated with the config
	accounts := proxy.NewAccounts(proxy.ServerAccountSource(func() []string { return serverAddrs(mon) },
		cfg.ServiceUser.User, cfg.ServiceUser.Password, cfg.Proxy.ConnectTimeout, backendTLS), cfg.Proxy.UsersRefreshInterval, log)
	accounts.SetConfigAccounts(cfg.Proxy.ConfigAccounts())
	accounts.SetAuthConfig(cfg.Proxy.Auth)
	// Accounts load in the background once a server answers: Sluice starts
	// even while the servers are still coming up.
	lc.start("accounts loader", goStop(func(ctx context.Context) {
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		defer wcancel()
		if _, err := mon.WaitPrimary(wctx); err != nil {
			if ctx.Err() == nil {
				log.Warn("no primary yet; accounts will load at the first login", "err", err)
			}
			return
		}
		if err := accounts.Load(ctx); err != nil && ctx.Err() == nil {
			log.Warn("loading client accounts failed; retrying at the first login", "err", err)
		}
		// Reloaded every interval too: with pooling a login reaches no
		// server, so a password changed or an account dropped there stops
		// working here within the interval.
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(cfg.Proxy.UsersRefreshInterval):
			}
			if err := accounts.Load(ctx); err != nil && ctx.Err() == nil {
				log.Warn("reloading client accounts failed; keeping the ones loaded before", "err", err)
			}
		}
	}))
	rt := router.New(mon, cfg.Router.Config)
	srv := proxy.NewServer(proxySection(cfg), accounts, rt, reg, log)
	chain, err := filter.NewChain(cfg.Filters)
	if err != nil {
		return err // validated with the config: cannot happen
	}
	srv.SetFilters(chain)
	var genlog *audit.Genlog
	var checkpoints func() any
	if cfg.Genlog.Enabled {
		pc := audit.ProducerConfig{Kafka: kafka, Compression: cfg.Genlog.Compression, Name: "genlog", Local: localBroker(cfg, broker),
			QueueSize: cfg.Genlog.QueueSize, Block: cfg.Genlog.OnFull == audit.OnFullBlock, Chain: true, ChainOwner: cfg.Name}
		if cfg.Genlog.OnFull == audit.OnFullSpill {
			pc.SpillFile, pc.SpillMaxBytes = cfg.Genlog.SpillFile, cfg.Genlog.SpillMaxBytes
			if err := os.MkdirAll(filepath.Dir(pc.SpillFile), 0o700); err != nil {
				return fmt.Errorf("genlog.spill_file %s: %w", pc.SpillFile, err)
			}
		}
		if cfg.Genlog.SigningKey != "" {
			key, err := audit.LoadSigningKey(cfg.Genlog.SigningKey)
			if err != nil {
				return fmt.Errorf("genlog.signing_key: %w", err)
			}
			pc.SigningKey, pc.CheckpointInterval = key, cfg.Genlog.CheckpointInterval
		}
		producer, err := audit.NewProducer(pc, log.With("component", "genlog"))
		if err != nil {
			return fmt.Errorf("genlog.spill_file: %w", err)
		}
		reg.MustRegister(producer.Collectors()...)
		// Closed after the proxy drained, so the last sessions' records go out.
		lc.start("genlog producer", func(context.Context) error { return producer.Close() })
		if err := createTopics(producer, localBroker(cfg, broker) != nil, log, cfg.Genlog.Topic); err != nil {
			return err
		}
		genlog = audit.NewGenlog(cfg.Genlog, producer)
		srv.SetGenlog(genlog)
		if producer.Signing() {
			checkpoints = func() any { return producer.Checkpoints() }
		}
	}
	srv.SetDigests(digest.New(cfg.QueryDigests))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_query_digests", Help: "Statement shapes in the digest table (at most query_digests).",
	}, func() float64 { return float64(srv.Digests().Len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sluice_query_digests_evicted_total", Help: "Statement shapes evicted from the digest table since it was created (start, or a resize by reload, which starts the count anew).",
		}, func() float64 { return float64(srv.Digests().Evicted()) }))

	// running is the config in force, for GET /v1/config and reloads.
	var running atomic.Pointer[config.Config]
	running.Store(cfg)
	var creds atomic.Pointer[admin.Credentials]
	if c, err := cfg.Admin.Credentials(); err != nil {
		return err
	} else {
		creds.Store(c)
	}
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
		srv.SetConfig(proxySection(next))
		if genlog != nil {
			genlog.SetConfig(next.Genlog)
		}
		rt.SetConfig(next.Router.Config)
		accounts.SetAuthConfig(next.Proxy.Auth)
		accounts.SetConfigAccounts(next.Proxy.ConfigAccounts())
		// Servers added or removed: the monitor polls the new list before
		// the reload returns, so routing sees it at once.
		rctx, rcancel := context.WithTimeout(context.Background(), 2*cfg.Monitor.Timeout+time.Second)
		mon.SetServers(rctx, next.Servers)
		rcancel()
		if chain, err := filter.NewChain(next.Filters); err == nil {
			srv.SetFilters(chain)
		}
		if next.QueryDigests != running.Load().QueryDigests {
			srv.SetDigests(digest.New(next.QueryDigests))
		}
		if c, err := next.Admin.Credentials(); err == nil {
			creds.Store(c)
		}
		running.Store(next)
		log.Info("config reloaded", "file", cfgFile)
		return nil
	}
	health := func() (bool, string) {
		if _, err := rt.Primary(); err != nil {
			return false, err.Error()
		}
		return true, "serving"
	}
	api := admin.API{Health: health, Gatherer: reg, Monitor: mon, Sessions: srv.SessionList, Digests: srv.Digests,
		Reload: reload, Stats: srv.Stats, Pool: srv.PoolStats, Config: func() any { return configView(running.Load().Redacted()) },
		Credentials: creds.Load,
		Record: func(a admin.Action) {
			log.Info("admin action", "user", a.User, "role", a.Role, "address", a.Address, "action", a.Action,
				"target", a.Target, "outcome", a.Outcome, "status", a.Status, "error", a.Error)
			recordEvent(a.User, struct {
				admin.Action
				Proxy string `json:"proxy"`
			}{a, cfg.Name})
		}}
	api.AuditCheckpoints = checkpoints
	if genlog != nil {
		api.AuditTail = func(ctx context.Context, where *audit.Where, since time.Duration, emit func([]byte)) error {
			return audit.Read(ctx, audit.ReadOptions{Kafka: kafka, Topic: cfg.Genlog.Topic,
				Since: since, Where: where, Follow: true}, emit)
		}
	}
	adminLn, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin_listen %s: %w", cfg.Admin.Listen, err)
	}
	if cfg.Admin.TLS.Cert != "" {
		tc, err := cfg.Admin.TLS.ServerConfig()
		if err != nil {
			adminLn.Close()
			return fmt.Errorf("admin_tls: %w", err)
		}
		adminLn = tls.NewListener(adminLn, tc)
	}
	adminSrv := &http.Server{Handler: admin.Handler(api), ReadHeaderTimeout: 5 * time.Second}
	adminDone := make(chan struct{})
	go func() {
		defer close(adminDone)
		if err := adminSrv.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server stopped", "err", err)
		}
	}()
	// Started before the proxy, so it stops after the drain: /health,
	// /metrics and the API answer while sessions finish.
	lc.start("admin server", func(ctx context.Context) error {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		err := adminSrv.Shutdown(sctx)
		if err != nil {
			// Requests still running (a followed audit tail): cut them off
			// before the broker they read goes.
			adminSrv.Close()
		}
		<-adminDone
		return err
	})

	ln, err := listenClients(cfg)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Proxy.Listen, err)
	}
	if cfg.Proxy.ListenReusePort && reusePort == nil {
		log.Warn("listen_reuseport not applied: only Linux spreads a port's connections over the processes sharing it; another instance on this port will not start")
	}
	proxyCtx, stopAccepting := context.WithCancel(context.Background())
	serveErr := make(chan error, 1)
	served := make(chan struct{})
	go func() {
		defer close(served)
		serveErr <- srv.Serve(proxyCtx, ln)
	}()
	lc.start("proxy", func(ctx context.Context) error {
		stopAccepting()
		<-served // the listener is closed
		log.Info("draining", "sessions", srv.Sessions(), "timeout", cfg.Proxy.DrainTimeout)
		dctx, dcancel := context.WithTimeout(ctx, cfg.Proxy.DrainTimeout)
		defer dcancel()
		if err := srv.Shutdown(dctx); err != nil {
			log.Warn("drain incomplete", "err", err)
		}
		// The passwords learned from full authentications die with Sluice.
		accounts.ForgetPasswords()
		return nil
	})

	// Again for the threads started meanwhile from one not yet done.
	applySchedSlice(cfg.SchedSlice, log)
	log.Info("sluice serving", "listen", ln.Addr().String(), "admin", adminLn.Addr().String(), "router", cfg.Router.Type)

	for {
		select {
		case err := <-serveErr:
			return fmt.Errorf("client listener stopped: %w", err)
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				_ = reload() // a refused config is logged; the running one stays
				continue
			}
			log.Info("stopping", "signal", sig.String())
			return nil
		}
	}
}

// listenClients opens the client listener, with SO_REUSEPORT when
// listen_reuseport asks for it (on Linux: see reusePort).
func listenClients(cfg *config.Config) (net.Listener, error) {
	lc := net.ListenConfig{}
	if cfg.Proxy.ListenReusePort {
		lc.Control = reusePort
	}
	return lc.Listen(context.Background(), "tcp", cfg.Proxy.Listen)
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

// EventsTopic receives one JSON record per topology event.
const EventsTopic = "sluice.events"

// createTopics makes a producer's topics exist before Sluice reports
// serving, so a consumer can subscribe before the first record. The bundled
// broker failing to stops the start (it is a disk error); external brokers
// that do not answer do not: records wait in the queue or the spill file,
// and the topic is created with the first of them.
func createTopics(p *audit.Producer, local bool, log *slog.Logger, topics ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.CreateTopics(ctx, topics...)
	if err != nil && !local {
		log.Warn("audit topics not created; they will be with their first record", "topics", topics, "err", err)
		return nil
	}
	return err
}

// localBroker is the bundled broker when Sluice's records go to it: the
// producers then append in process rather than over TCP.
func localBroker(cfg *config.Config, broker *logbroker.Broker) *logbroker.Broker {
	if len(cfg.Genlog.Brokers) > 0 {
		return nil
	}
	return broker
}

// MonitorSection is the monitor: section with what the monitor takes
// from the others: the servers, the service user,
// router.max_replication_lag and tls.backend's TLS.
func MonitorSection(cfg *config.Config) monitor.Config {
	mc := cfg.Monitor
	mc.Servers = cfg.Servers
	mc.User, mc.Password = cfg.ServiceUser.User, cfg.ServiceUser.Password
	mc.TLS, _ = cfg.TLS.BackendConfig() // validated with the config
	mc.MaxLag = cfg.Router.MaxReplicationLag
	return mc
}

// proxySection is the proxy's top-level keys with what the proxy takes
// from the other sections: the instance name, the router section's
// recovery keys and classifier_cache_size, and the tls: section.
func proxySection(cfg *config.Config) proxy.Config {
	pc := cfg.Proxy
	pc.Name = cfg.Name
	pc.Recovery = cfg.Router.Recovery
	pc.ClassifierCacheSize = cfg.Router.ClassifierCacheSize
	for _, s := range cfg.Servers {
		if s.ProxyProtocol {
			if pc.ProxyProtocolServers == nil {
				pc.ProxyProtocolServers = map[string]bool{}
			}
			pc.ProxyProtocolServers[s.Name] = true
		}
	}
	pc.RequireTLS = cfg.TLS.Require
	// Validated with the config; files that changed since are re-read at
	// the next reload.
	pc.TLS, _ = cfg.TLS.ClientConfig()
	pc.BackendTLS, _ = cfg.TLS.BackendConfig()
	return pc
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

// buildInfoGauge is sluice_build_info: 1, labelled with what this binary
// is, so dashboards can show (and alert on) the versions running.
func buildInfoGauge() prometheus.Collector {
	bi := buildinfo.Read()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_build_info", Help: "Always 1; the labels say which Sluice this is.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Commit, "go_version": bi.GoVersion}})
	g.Set(1)
	return g
}
