// Command sluice is the Sluice MySQL proxy and its tools.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/internal/app"
	"github.com/sluice-proxy/sluice/internal/buildinfo"
	"github.com/sluice-proxy/sluice/internal/config"
)

func main() {
	root := &cobra.Command{
		Use:           "sluice",
		Short:         "Sluice: a MySQL proxy that splits reads from writes and logs every query to a Kafka-compatible broker",
		Version:       buildinfo.Read().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(versionCmd(), serveCmd(), brokerCmd(), auditCmd(), ctlCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sluice:", err)
		var ce *config.Error
		var we *audit.WhereError
		if errors.As(err, &ce) || errors.As(err, &we) {
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
	var check bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the proxy (and the bundled broker when broker.enabled)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if check {
				if _, err := config.Load(file); err != nil {
					return err
				}
				fmt.Println(file + ": ok")
				return nil
			}
			return app.Serve(file)
		},
	}
	cmd.Flags().StringVar(&file, "config", "sluice.yaml", "config file")
	cmd.Flags().BoolVar(&check, "check-config", false, "only load and validate the config: exit 0 when good, 2 (one line naming file, line and key) when not")
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
