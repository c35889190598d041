package app

import (
	"context"
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/logbroker"
)

// ServeBroker runs only the bundled broker until SIGTERM or SIGINT.
func ServeBroker(cfgFile string) error {
	cfg, err := config.LoadBroker(cfgFile)
	if err != nil {
		return err
	}
	var level slog.LevelVar
	log := NewLogger(cfg.Log, &level).With("component", "broker")
	b, err := logbroker.New(cfg.Broker, log)
	if err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.Info("broker serving", "listen", cfg.Broker.Listen, "data_dir", cfg.Broker.DataDir)
	serveErr := b.ListenAndServe(ctx)
	if err := b.Close(); err != nil && serveErr == nil {
		serveErr = err
	}
	return serveErr
}
