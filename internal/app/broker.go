package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/internal/lockfile"
	"github.com/sluice-proxy/sluice/logbroker"
)

// brokerSection is the broker: section with what the broker takes from the
// others: the audit topics it keeps append-only (genlog.topic, its
// checkpoints topic and the events topic).
func brokerSection(cfg *config.Config) logbroker.Config {
	bc := cfg.Broker
	bc.ProtectedTopics = append(append([]string(nil), bc.ProtectedTopics...),
		cfg.Genlog.Topic, audit.CheckpointTopic(cfg.Genlog.Topic), EventsTopic)
	return bc
}

// openBroker locks broker.data_dir and only then opens the broker, whose
// recovery may truncate segments: a second process on the same data stops
// at the lock, naming the first one's pid, before touching anything. The
// returned close closes the broker and releases the lock.
func openBroker(cfg *config.Config, log *slog.Logger) (*logbroker.Broker, func() error, error) {
	dir := cfg.Broker.DataDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("broker.data_dir: %w", err)
	}
	lock, err := lockfile.Acquire(filepath.Join(dir, "sluice.lock"), "broker.data_dir "+dir)
	if err != nil {
		return nil, nil, err
	}
	b, err := logbroker.New(brokerSection(cfg), log)
	if err != nil {
		lock.Release()
		return nil, nil, err
	}
	// The broker keeps only the salted credentials it derived: drop the
	// config's copy of the passwords too.
	for i := range cfg.Broker.SASL.Users {
		cfg.Broker.SASL.Users[i].Password = ""
	}
	return b, func() error {
		err := b.Close()
		lock.Release()
		return err
	}, nil
}

// ServeBroker runs only the bundled broker until SIGTERM or SIGINT.
func ServeBroker(cfgFile string) error {
	cfg, err := config.LoadBroker(cfgFile)
	if err != nil {
		return err
	}
	var level slog.LevelVar
	log := NewLogger(cfg.Log, &level).With("component", "broker")
	b, closeBroker, err := openBroker(cfg, log)
	if err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.Info("broker serving", "listen", cfg.Broker.Listen, "data_dir", cfg.Broker.DataDir)
	serveErr := b.ListenAndServe(ctx)
	if err := closeBroker(); err != nil && serveErr == nil {
		serveErr = err
	}
	return serveErr
}
