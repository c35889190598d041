// Command sluice is the Sluice MySQL proxy and its tools.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/internal/app"
	"github.com/sluice-proxy/sluice/internal/buildinfo"
	"github.com/sluice-proxy/sluice/internal/config"
	"github.com/sluice-proxy/sluice/monitor"
)

// rootCmd is the whole command tree (packaging/ generates the man pages
// and the bash completion from it: manpages.go).
func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "sluice",
		Short:         "Sluice: a MySQL proxy that splits reads from writes and logs every query to a Kafka-compatible broker",
		Version:       buildinfo.Read().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(versionCmd(), serveCmd(), brokerCmd(), auditCmd(), ctlCmd(), replayCmd())
	return root
}

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sluice:", err)
		var ce *config.Error
		var we *audit.WhereError
		var rf *replayFailed
		if errors.As(err, &ce) || errors.As(err, &we) || errors.As(err, &rf) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Sluice's version, commit and Go version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Println(buildinfo.Read())
		},
	}
}

func serveCmd() *cobra.Command {
	var file string
	var check, live bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the proxy (and the bundled broker when broker.enabled)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if check {
				cfg, err := config.Load(file)
				if err != nil {
					return err
				}
				fmt.Println(file + ": ok")
				if live {
					checkPrivileges(cmd.Context(), cfg)
				}
				return nil
			}
			return app.Serve(file)
		},
	}
	cmd.Flags().StringVar(&file, "config", "sluice.yaml", "config file")
	cmd.Flags().BoolVar(&check, "check-config", false, "only load and validate the config: exit 0 when good, 2 (one line naming file, line and key) when not")
	cmd.Flags().BoolVar(&live, "live", false, "with --check-config: also log in to each server as service_user and say which enabled feature lacks which privilege there")
	return cmd
}

func brokerCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run only the bundled Kafka-protocol log broker (the broker: section of the config)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return app.ServeBroker(file)
		},
	}
	cmd.Flags().StringVar(&file, "config", "sluice.yaml", "config file")
	return cmd
}

// checkPrivileges prints, per server, what service_user lacks there for
// the features cfg enables.
func checkPrivileges(ctx context.Context, cfg *config.Config) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	gaps := monitor.CheckPrivileges(ctx, app.MonitorSection(cfg), quiet)
	for _, s := range cfg.Servers {
		if len(gaps[s.Name]) == 0 {
			fmt.Printf("%s: service_user has every privilege the enabled features need\n", s.Name)
		}
		for _, g := range gaps[s.Name] {
			fmt.Printf("%s: %s\n", s.Name, g)
		}
	}
}
