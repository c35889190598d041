package logbroker

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Broker is a single-node Kafka-protocol log broker.
type Broker struct {
	cfg     Config
	log     *slog.Logger
	metaDir string
	syncer  *syncer
	groups  *groupCoordinator
	pids    *producerIDs

	tlsConfig *tls.Config     // nil: plaintext listener
	sasl      *saslUsers      // nil: no SASL
	authz     *authorizer     // nil: every request allowed
	protected map[string]bool // broker.protected_topics

	topicsMu sync.RWMutex
	topics   map[string]*topic

	// Background work (syncer, retention, group timers) lives until Close.
	bgCancel context.CancelFunc
	bgDone   sync.WaitGroup
	// stopCtx ends blocking requests (long polls, joins) at Close.
	stopCtx context.Context
	stop    context.CancelFunc

	addr atomic.Pointer[net.Addr]

	connsMu   sync.Mutex
	conns     map[net.Conn]struct{}
	listeners map[net.Listener]struct{}
	connWG    sync.WaitGroup
	// rejected counts connections closed at accept for MaxConnections;
	// rejectLogged is when that was last logged (unix nanoseconds) and
	// rejectUnlogged how many were rejected since.
	rejected       atomic.Uint64
	counters       brokerCounters
	rejectLogged   atomic.Int64
	rejectUnlogged atomic.Uint64
	closeOnce      sync.Once
	closeErr       error
}

// New opens data_dir, recovering every partition (torn tails are truncated,
// indexes rebuilt where needed) and the committed group offsets. It does not
// listen yet.
func New(cfg Config, log *slog.Logger) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if log == nil {
		log = slog.Default()
	}
	// Security first: a bad certificate or password file stops the broker
	// before it touches data_dir.
	var tlsConfig *tls.Config
	if cfg.TLS.Enabled() {
		var err error
		if tlsConfig, err = cfg.TLS.serverTLS(); err != nil {
			return nil, err
		}
	}
	sasl, err := loadSASLUsers(cfg.SASL)
	if err != nil {
		return nil, err
	}
	// The passwords are not kept: only the derived credentials are.
	cfg.SASL.Users = append([]SASLUser(nil), cfg.SASL.Users...)
	for i := range cfg.SASL.Users {
		cfg.SASL.Users[i].Password = ""
	}
	protected := make(map[string]bool, len(cfg.ProtectedTopics))
	for _, t := range cfg.ProtectedTopics {
		protected[t] = true
	}
	b := &Broker{
		tlsConfig: tlsConfig,
		sasl:      sasl,
		authz:     newAuthorizer(cfg),
		protected: protected,
		cfg:       cfg,
		log:       log,
		metaDir:   filepath.Join(cfg.DataDir, metaDirName),
		syncer:    newSyncer(cfg.Fsync, cfg.FsyncInterval),
		topics:    make(map[string]*topic),
		conns:     make(map[net.Conn]struct{}),
		listeners: make(map[net.Listener]struct{}),
	}
	for _, d := range []string{cfg.DataDir, b.metaDir, filepath.Join(b.metaDir, "topics"), filepath.Join(b.metaDir, "groups")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("broker.data_dir: %w", err)
		}
	}
	if b.pids, err = openProducerIDs(filepath.Join(b.metaDir, "producer_ids"), cfg.Fsync != FsyncOS); err != nil {
		return nil, err
	}
	if err := b.loadTopics(); err != nil {
		b.closeTopics()
		return nil, err
	}
	if b.groups, err = newGroupCoordinator(b, filepath.Join(b.metaDir, "groups")); err != nil {
		b.closeTopics()
		return nil, err
	}
	b.stopCtx, b.stop = context.WithCancel(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	b.bgCancel = cancel
	b.bgDone.Add(3)
	go func() { defer b.bgDone.Done(); b.syncer.run(ctx) }()
	go func() { defer b.bgDone.Done(); b.maintain(ctx) }()
	go func() { defer b.bgDone.Done(); b.groups.run(ctx) }()
	return b, nil
}

// loadTopics finds the partition directories of data_dir.
func (b *Broker) loadTopics() error {
	metas, err := readTopicMetas(filepath.Join(b.metaDir, "topics"))
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(b.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("broker.data_dir: %w", err)
	}
	counts := make(map[string]int32)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		name, id, ok := parsePartitionDir(e.Name())
		if !ok {
			continue
		}
		if id+1 > counts[name] {
			counts[name] = id + 1
		}
	}
	for name, m := range metas {
		if int32(m.Partitions) > counts[name] {
			counts[name] = int32(m.Partitions)
		}
	}
	names := make([]string, 0, len(counts))
	for name := range counts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, err := b.openTopic(name, int(counts[name]), metas[name].Configs); err != nil {
			return err
		}
	}
	if len(names) > 0 {
		b.log.Info("recovered topics", "count", len(names), "data_dir", b.cfg.DataDir)
	}
	return nil
}

// openTopic opens (creating as needed) all partitions of a topic and
// registers it. Called at start and with topicsMu held for writing.
func (b *Broker) openTopic(name string, partitions int, configs map[string]string) (*topic, error) {
	settings, err := resolveSettings(b.cfg, configs)
	if err != nil {
		return nil, err
	}
	if b.protected[name] {
		settings = protectSettings(b.cfg, settings)
	}
	t := &topic{name: name, log: b.log, configs: configs}
	t.current.Store(&settings)
	for i := 0; i < partitions; i++ {
		p, err := openPartition(t, int32(i), b.cfg.DataDir, b.syncer, b.log)
		if err != nil {
			for _, p := range t.partitions {
				p.closeFiles()
			}
			return nil, err
		}
		t.partitions = append(t.partitions, p)
	}
	b.topics[name] = t
	return t, nil
}

// createTopic makes a new topic, persisting its description first so that
// its configs survive a restart.
func (b *Broker) createTopic(name string, partitions int, configs map[string]string) (*topic, error) {
	b.topicsMu.Lock()
	defer b.topicsMu.Unlock()
	if t := b.topics[name]; t != nil {
		return t, errTopicExists
	}
	data, _ := json.Marshal(topicMeta{Name: name, Partitions: partitions, Configs: configs})
	if err := writeFileAtomic(filepath.Join(b.metaDir, "topics", metaFileName(name)), data, b.cfg.Fsync != FsyncOS); err != nil {
		return nil, err
	}
	t, err := b.openTopic(name, partitions, configs)
	if err != nil {
		return nil, err
	}
	syncDir(b.cfg.DataDir)
	b.log.Info("created topic", "topic", name, "partitions", partitions)
	return t, nil
}

var errTopicExists = errors.New("topic already exists")

// topic returns the named topic, creating it when autoCreate allows.
func (b *Broker) topic(name string, autoCreate bool) (*topic, error) {
	b.topicsMu.RLock()
	t := b.topics[name]
	b.topicsMu.RUnlock()
	if t != nil || !autoCreate || !*b.cfg.AutoCreateTopics || !validTopicName(name) {
		return t, nil
	}
	t, err := b.createTopic(name, b.cfg.Partitions, nil)
	if errors.Is(err, errTopicExists) {
		err = nil
	}
	return t, err
}

func (b *Broker) partition(topicName string, id int32) *partition {
	b.topicsMu.RLock()
	defer b.topicsMu.RUnlock()
	t := b.topics[topicName]
	if t == nil || id < 0 || int(id) >= len(t.partitions) {
		return nil
	}
	return t.partitions[id]
}

func (b *Broker) topicNames() []string {
	b.topicsMu.RLock()
	defer b.topicsMu.RUnlock()
	names := make([]string, 0, len(b.topics))
	for name := range b.topics {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// deleteTopic removes a topic and its files.
func (b *Broker) deleteTopic(name string) bool {
	b.topicsMu.Lock()
	t := b.topics[name]
	delete(b.topics, name)
	b.topicsMu.Unlock()
	if t == nil {
		return false
	}
	for _, p := range t.partitions {
		p.filesMu.Lock()
		p.mu.Lock()
		p.closeFiles()
		os.RemoveAll(p.dir)
		p.mu.Unlock()
		p.filesMu.Unlock()
	}
	os.Remove(filepath.Join(b.metaDir, "topics", metaFileName(name)))
	b.log.Info("deleted topic", "topic", name)
	return true
}

// maintain runs retention and compaction every RetentionCheckInterval.
func (b *Broker) maintain(ctx context.Context) {
	t := time.NewTicker(b.cfg.RetentionCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.runMaintenance(ctx, time.Now())
		}
	}
}

// runMaintenance applies retention and compaction to every partition once.
func (b *Broker) runMaintenance(ctx context.Context, now time.Time) {
	b.topicsMu.RLock()
	var parts []*partition
	for _, t := range b.topics {
		parts = append(parts, t.partitions...)
	}
	b.topicsMu.RUnlock()
	for _, p := range parts {
		if ctx.Err() != nil {
			return
		}
		if n := p.enforceRetention(now); n > 0 {
			b.log.Info("retention deleted segments", "partition", filepath.Base(p.dir), "segments", n)
		}
		if p.topic.settings().compact {
			if err := p.compact(); err != nil {
				b.log.Warn("compaction failed", "partition", filepath.Base(p.dir), "err", err)
			}
		}
	}
}

// Serve accepts Kafka clients on ln until ctx is done or the broker is
// closed, then closes ln and every connection and returns once all
// connection goroutines have exited.
func (b *Broker) Serve(ctx context.Context, ln net.Listener) error {
	addr := ln.Addr()
	b.addr.Store(&addr)
	b.connsMu.Lock()
	if b.isStopping() {
		b.connsMu.Unlock()
		ln.Close()
		return errors.New("logbroker: broker is closed")
	}
	b.listeners[ln] = struct{}{}
	b.connsMu.Unlock()
	b.log.Info("broker listening", "addr", addr.String(), "advertised", b.advertised())

	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var acceptErr error
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !b.isStopping() {
				acceptErr = err
			}
			break
		}
		b.connsMu.Lock()
		if b.isStopping() {
			b.connsMu.Unlock()
			c.Close()
			continue
		}
		if len(b.conns) >= b.cfg.MaxConnections {
			b.connsMu.Unlock()
			b.logRejected(c.RemoteAddr())
			c.Close()
			continue
		}
		b.conns[c] = struct{}{}
		b.connWG.Add(1)
		b.connsMu.Unlock()
		go func() {
			defer b.connWG.Done()
			b.serveConn(ctx, c)
			b.connsMu.Lock()
			delete(b.conns, c)
			b.connsMu.Unlock()
		}()
	}
	ln.Close()
	b.connsMu.Lock()
	delete(b.listeners, ln)
	for c := range b.conns {
		c.Close()
	}
	b.connsMu.Unlock()
	b.connWG.Wait()
	return acceptErr
}

// rejectLogEvery is the shortest interval between two log lines about
// connections rejected for broker.max_connections.
const rejectLogEvery = 10 * time.Second

// logRejected counts a connection closed for MaxConnections and logs it,
// at most once per rejectLogEvery, with the number rejected since.
func (b *Broker) logRejected(remote net.Addr) {
	b.rejected.Add(1)
	n := b.rejectUnlogged.Add(1)
	now := time.Now().UnixNano()
	last := b.rejectLogged.Load()
	if last != 0 && now-last < int64(rejectLogEvery) || !b.rejectLogged.CompareAndSwap(last, now) {
		return
	}
	b.rejectUnlogged.Add(-n)
	b.log.Warn("rejecting kafka connections: broker.max_connections reached",
		"max_connections", b.cfg.MaxConnections, "rejected", n, "last_remote", remote.String())
}

// connCount is the number of client connections being served.
func (b *Broker) connCount() int {
	b.connsMu.Lock()
	defer b.connsMu.Unlock()
	return len(b.conns)
}

// ListenAndServe listens on Config.Listen and serves until ctx is done.
func (b *Broker) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", b.cfg.Listen)
	if err != nil {
		return fmt.Errorf("broker.listen: %w", err)
	}
	return b.Serve(ctx, ln)
}

// Addr is the address being listened on, nil before Serve.
func (b *Broker) Addr() net.Addr {
	if a := b.addr.Load(); a != nil {
		return *a
	}
	return nil
}

// advertised is the host:port given to clients in metadata.
func (b *Broker) advertised() string {
	if b.cfg.AdvertisedListen != "" {
		return b.cfg.AdvertisedListen
	}
	if a := b.Addr(); a != nil {
		return a.String()
	}
	return b.cfg.Listen
}

func (b *Broker) advertisedHostPort() (string, int32) {
	host, port, err := net.SplitHostPort(b.advertised())
	if err != nil {
		return "127.0.0.1", 9092
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	n, _ := strconv.Atoi(port)
	return host, int32(n)
}

func (b *Broker) isStopping() bool {
	return b.stopCtx.Err() != nil
}

// Close stops listeners and connections, flushes and fsyncs every
// partition and closes all files. It is safe to call more than once.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.connsMu.Lock()
		b.stop()
		for ln := range b.listeners {
			ln.Close()
		}
		for c := range b.conns {
			c.Close()
		}
		b.connsMu.Unlock()
		b.connWG.Wait()
		b.bgCancel()
		b.bgDone.Wait()
		b.closeErr = b.closeTopics()
	})
	return b.closeErr
}

func (b *Broker) closeTopics() error {
	b.topicsMu.Lock()
	defer b.topicsMu.Unlock()
	var errs []error
	for _, t := range b.topics {
		for _, p := range t.partitions {
			p.filesMu.Lock()
			p.mu.Lock()
			if err := p.active().seal(); err != nil {
				errs = append(errs, err)
			}
			// Every segment, not only the active one: under fsync "os"
			// rolled segments were never flushed.
			for _, s := range p.segments {
				if err := s.sync(); err != nil && !errors.Is(err, os.ErrClosed) {
					errs = append(errs, err)
				}
			}
			errs = append(errs, p.closeFiles())
			p.mu.Unlock()
			p.filesMu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// Stats reports every partition's offsets and size, sorted by topic and
// partition, for export as metrics.
func (b *Broker) Stats() []PartitionStats {
	b.topicsMu.RLock()
	var parts []*partition
	for _, t := range b.topics {
		parts = append(parts, t.partitions...)
	}
	b.topicsMu.RUnlock()
	out := make([]PartitionStats, 0, len(parts))
	for _, p := range parts {
		out = append(out, p.stats())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}

// producerIDs hands out producer ids that are never reused, even across
// restarts: ids are reserved in blocks whose upper bound is persisted
// before any id of the block is used.
type producerIDs struct {
	path    string
	durable bool
	mu      sync.Mutex
	next    int64
	limit   int64
}

const producerIDBlock = 1000

func openProducerIDs(path string, durable bool) (*producerIDs, error) {
	p := &producerIDs{path: path, durable: durable}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%s is corrupt: %q", path, data)
		}
		p.next, p.limit = n, n
	}
	return p, nil
}

func (p *producerIDs) allocate() (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next >= p.limit {
		limit := p.next + producerIDBlock
		if err := writeFileAtomic(p.path, []byte(strconv.FormatInt(limit, 10)), p.durable); err != nil {
			return 0, err
		}
		p.limit = limit
	}
	id := p.next
	p.next++
	return id, nil
}
