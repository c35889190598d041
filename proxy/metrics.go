package proxy

import (
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus series.
type Metrics struct {
	sessions     prometheus.Gauge
	refused      prometheus.Counter
	authFailures prometheus.Counter
	backendConns prometheus.Gauge
	// primaryWaiting counts sessions waiting for a primary now
	// (router.primary_wait); primaryWaitTimeouts those that gave up.
	primaryWaiting      prometheus.Gauge
	primaryWaitTimeouts prometheus.Counter
	// replayed and replayFailed count transactions replayed on a new
	// primary (router.transaction_replay), and those that could not be.
	replayed, replayFailed prometheus.Counter
	// commands holds one counter per command byte, resolved once so the
	// per-command path does no label lookup.
	commands [256]prometheus.Counter
	// cacheHits and cacheMisses count classifier lookups.
	cacheHits, cacheMisses prometheus.Counter
	// toPrimary and toReplica count routed statements, resolved once.
	toPrimary, toReplica prometheus.Counter
	// filterDenied and filterRewritten count statements filters refused
	// and rewrote.
	filterDenied, filterRewritten, filterDetected prometheus.Counter
	// durations is each command's time from its arrival to the end of its
	// answer, by command and route; durationOf holds the series once used,
	// so /metrics lists only the pairs that occurred and the per-command
	// path does no label lookup.
	durations  *prometheus.HistogramVec
	durationOf [256][len(routeLabels)]atomic.Pointer[observer]
}

type observer struct{ prometheus.Observer }

// routeLabels are the route label's values: a command answered by Sluice
// itself or refused, one sent to the primary, one sent to a replica.
var routeLabels = [...]string{"none", "primary", "replica"}

// observe records one command's duration.
func (m *Metrics) observe(cmd byte, routed, toPrimary bool, d time.Duration) {
	route := 0
	if routed {
		route = 2
		if toPrimary {
			route = 1
		}
	}
	o := m.durationOf[cmd][route].Load()
	if o == nil {
		o = &observer{m.durations.WithLabelValues(commandName(cmd), routeLabels[route])}
		m.durationOf[cmd][route].Store(o)
	}
	o.Observe(d.Seconds())
}

func (m *Metrics) classified(hit bool) {
	if hit {
		m.cacheHits.Inc()
	} else {
		m.cacheMisses.Inc()
	}
}

// routed counts a statement by the role of the server it went to.
func (m *Metrics) routed(toPrimary bool) {
	if toPrimary {
		m.toPrimary.Inc()
	} else {
		m.toReplica.Inc()
	}
}

func newMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_client_sessions", Help: "Client sessions open now.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_client_connections_refused_total", Help: "Client connections refused by max_connections.",
		}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_auth_failures_total", Help: "Failed client logins.",
		}),
		backendConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_backend_connections", Help: "Connections from Sluice to the servers, for client sessions.",
		}),
		primaryWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_sessions_waiting_for_primary", Help: "Sessions whose statement waits for a primary to be known (router.primary_wait).",
		}),
		primaryWaitTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_primary_wait_timeouts_total", Help: "Statements and logins that waited router.primary_wait for a primary and failed.",
		}),
	}
	replays := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_transaction_replays_total", Help: "Transactions replayed (router.transaction_replay): on another server after theirs was lost, or after a deadlock rolled them back (transaction_replay_retry_on_deadlock), by outcome.",
	}, []string{"outcome"})
	m.replayed, m.replayFailed = replays.WithLabelValues("replayed"), replays.WithLabelValues("failed")
	m.cacheHits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_classifier_cache_hits_total", Help: "Statements whose class came from the cache.",
	})
	m.cacheMisses = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_classifier_cache_misses_total", Help: "Statements the parser classified.",
	})
	routes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_routed_total", Help: "Statements routed, by the role of the server chosen.",
	}, []string{"route"})
	m.toPrimary, m.toReplica = routes.WithLabelValues("primary"), routes.WithLabelValues("replica")
	filtered := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_filter_statements_total", Help: "Statements the filter chain refused, rewrote, or would refuse (detect mode), by outcome.",
	}, []string{"outcome"})
	m.filterDenied, m.filterRewritten = filtered.WithLabelValues("refused"), filtered.WithLabelValues("rewritten")
	m.filterDetected = filtered.WithLabelValues("detected")
	commands := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_commands_total", Help: "Client commands received, by command.",
	}, []string{"command"})
	for i := range m.commands {
		m.commands[i] = commands.WithLabelValues(commandName(byte(i)))
	}
	m.durations = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "sluice_query_duration_seconds",
		Help: "Client commands' time in Sluice, from the command's arrival to the end of its answer, by command and route (none: answered by Sluice or refused).",
		// Classic buckets for every scraper, and a native histogram for
		// those that ask for it (Prometheus 2.40+ with native histograms on).
		Buckets:                         []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  160,
		NativeHistogramMinResetDuration: time.Hour,
	}, []string{"command", "route"})
	if reg != nil {
		reg.MustRegister(m.sessions, m.refused, m.authFailures, m.backendConns, m.primaryWaiting, m.primaryWaitTimeouts, replays, commands, m.cacheHits, m.cacheMisses, routes, filtered, m.durations)
	}
	return m
}

// commandNames is indexed by the command byte: a lookup per query and log
// record, where a map would hash.
var commandNames = [256]string{
	mysql.COM_QUIT: "COM_QUIT", mysql.COM_INIT_DB: "COM_INIT_DB", mysql.COM_QUERY: "COM_QUERY",
	mysql.COM_FIELD_LIST: "COM_FIELD_LIST", mysql.COM_STATISTICS: "COM_STATISTICS",
	mysql.COM_PROCESS_KILL: "COM_PROCESS_KILL", mysql.COM_PING: "COM_PING",
	mysql.COM_CHANGE_USER: "COM_CHANGE_USER", mysql.COM_STMT_PREPARE: "COM_STMT_PREPARE",
	mysql.COM_STMT_EXECUTE: "COM_STMT_EXECUTE", mysql.COM_STMT_SEND_LONG_DATA: "COM_STMT_SEND_LONG_DATA",
	mysql.COM_STMT_CLOSE: "COM_STMT_CLOSE", mysql.COM_STMT_RESET: "COM_STMT_RESET",
	mysql.COM_SET_OPTION: "COM_SET_OPTION", mysql.COM_STMT_FETCH: "COM_STMT_FETCH",
	mysql.COM_RESET_CONNECTION: "COM_RESET_CONNECTION", mysql.COM_CREATE_DB: "COM_CREATE_DB",
	mysql.COM_DROP_DB: "COM_DROP_DB", mysql.COM_REFRESH: "COM_REFRESH", mysql.COM_DEBUG: "COM_DEBUG",
	mysql.COM_SHUTDOWN: "COM_SHUTDOWN", mysql.COM_PROCESS_INFO: "COM_PROCESS_INFO",
}

// commandName names a command byte for metrics and logs.
func commandName(cmd byte) string {
	if n := commandNames[cmd]; n != "" {
		return n
	}
	return "other"
}
