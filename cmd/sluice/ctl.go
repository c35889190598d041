package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-proxy/sluice/audit"
)

// ctlClient calls the admin API of a running Sluice.
type ctlClient struct {
	admin, token string
	json         bool
	// tlsCA, tlsCert and tlsKey: the admin listener speaks TLS (admin_tls),
	// verified against tlsCA, with a client certificate when it asks.
	tlsCA, tlsCert, tlsKey string
	http                   http.Client
}

// setup readies the HTTP client: TLS when asked for by --tls-* or an
// https:// address.
func (c *ctlClient) setup() error {
	if c.tlsCA == "" && c.tlsCert == "" && !strings.HasPrefix(c.admin, "https://") {
		return nil
	}
	// The same settings, read the same way, as the audit commands' --tls-*.
	tc, err := audit.ClientTLS{Enabled: true, CA: c.tlsCA, Cert: c.tlsCert, Key: c.tlsKey}.Config(flagOf)
	if err != nil {
		return err
	}
	c.http.Transport = &http.Transport{TLSClientConfig: tc}
	if !strings.Contains(c.admin, "://") {
		c.admin = "https://" + c.admin
	}
	return nil
}

func (c *ctlClient) do(method, path string, out any) error {
	if err := c.setup(); err != nil {
		return err
	}
	u := c.admin
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	req, err := http.NewRequest(method, u+path, nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w (is Sluice running? set --admin to its admin_listen)", c.admin, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: %s", method, path, e.Error)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if c.json {
		var buf bytes.Buffer
		if json.Indent(&buf, body, "", "  ") != nil {
			buf.Write(body)
		}
		_, err = fmt.Println(strings.TrimSpace(buf.String()))
		return err
	}
	return json.Unmarshal(body, out)
}

func ctlCmd() *cobra.Command {
	c := &ctlClient{http: http.Client{Timeout: time.Minute}}
	cmd := &cobra.Command{
		Use:   "ctl",
		Short: "Operate a running Sluice through its admin API (tables, or --json for scripts)",
	}
	cmd.PersistentFlags().StringVar(&c.admin, "admin", "127.0.0.1:8989", "admin API address (admin_listen)")
	cmd.PersistentFlags().StringVar(&c.token, "token", os.Getenv("SLUICE_ADMIN_TOKEN"), "an admin user's token, or admin_token (default $SLUICE_ADMIN_TOKEN)")
	cmd.PersistentFlags().StringVar(&c.tlsCA, "tls-ca", "", "CA (PEM) to verify the admin listener's certificate (admin_tls); implies https")
	cmd.PersistentFlags().StringVar(&c.tlsCert, "tls-cert", "", "client certificate (PEM), when admin_tls.client_ca asks for one")
	cmd.PersistentFlags().StringVar(&c.tlsKey, "tls-key", "", "the client certificate's key (PEM)")
	cmd.PersistentFlags().BoolVar(&c.json, "json", false, "print the API's JSON")
	table := func(header string, rows func(w io.Writer)) {
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, header)
		rows(tw)
		tw.Flush()
	}

	cmd.AddCommand(&cobra.Command{
		Use: "servers", Short: "Servers with role, state, lag, GTID position and pooled connections", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var servers []struct {
				Name, Address, State, Role string
				LagSeconds                 float64 `json:"lag_seconds"`
				GTIDPosition               string  `json:"gtid_position"`
				LastError                  string  `json:"last_error"`
				Pool                       []struct {
					User            string
					Open            int
					InUse           int `json:"in_use"`
					Waits, Timeouts int64
				}
			}
			if err := c.do("GET", "/v1/servers", &servers); err != nil || c.json {
				return err
			}
			table("NAME\tADDRESS\tSTATE\tLAG\tGTID\tPOOL\tERROR", func(w io.Writer) {
				for _, s := range servers {
					lag := "-"
					if s.LagSeconds >= 0 && s.Role == "replica" {
						lag = fmt.Sprintf("%.1fs", s.LagSeconds)
					}
					var pool []string
					for _, p := range s.Pool {
						pool = append(pool, fmt.Sprintf("%s %d/%d in use, %d waits, %d timeouts", p.User, p.InUse, p.Open, p.Waits, p.Timeouts))
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Address, s.State, lag, s.GTIDPosition, strings.Join(pool, "; "), s.LastError)
				}
			})
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use: "sessions", Short: "Client sessions", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var sessions []struct {
				ID               uint32
				User, Client, DB string
				Started          time.Time
				Statements       int64
				InTransaction    bool `json:"in_transaction"`
				Idle             bool
				Backends         []string
				Pinned           string
			}
			if err := c.do("GET", "/v1/sessions", &sessions); err != nil || c.json {
				return err
			}
			table("ID\tUSER\tCLIENT\tDB\tAGE\tSTATEMENTS\tTX\tBACKENDS", func(w io.Writer) {
				for _, s := range sessions {
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%d\t%v\t%s\n", s.ID, s.User, s.Client, s.DB,
						time.Since(s.Started).Round(time.Second), s.Statements, s.InTransaction, strings.Join(s.Backends, ","))
				}
			})
			return nil
		},
	})
	var limit int
	var sortBy string
	digests := &cobra.Command{
		Use: "digests", Short: "Top statement shapes by total time (or --sort count|max|p99|errors)", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var ds []struct {
				Digest, Fingerprint string
				Count               uint64
				TotalUS             int64 `json:"total_us"`
				AvgUS               int64 `json:"avg_us"`
				MaxUS               int64 `json:"max_us"`
				P99US               int64 `json:"p99_us"`
				Rows                int64
				Errors              uint64
			}
			q := url.Values{"limit": {fmt.Sprint(limit)}, "sort": {sortBy}}
			if err := c.do("GET", "/v1/digests?"+q.Encode(), &ds); err != nil || c.json {
				return err
			}
			table("COUNT\tTOTAL\tAVG\tP99\tMAX\tROWS\tERRORS\tFINGERPRINT", func(w io.Writer) {
				for _, d := range ds {
					fp := d.Fingerprint
					if len(fp) > 100 {
						fp = fp[:97] + "..."
					}
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", d.Count, us(d.TotalUS), us(d.AvgUS), us(d.P99US), us(d.MaxUS), d.Rows, d.Errors, fp)
				}
			})
			return nil
		},
	}
	digests.Flags().IntVar(&limit, "limit", 20, "how many shapes")
	digests.Flags().StringVar(&sortBy, "sort", "total", "order: total, count, max, p99 or errors")
	cmd.AddCommand(digests)
	cmd.AddCommand(&cobra.Command{
		Use: "config", Short: "The running config, secrets redacted (JSON)", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			c.json = true
			return c.do("GET", "/v1/config", nil)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use: "checkpoint", Short: "The latest signed checkpoints of the audit trail (JSON): an anchor for audit verify --checkpoint", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			c.json = true
			return c.do("GET", "/v1/audit/checkpoint", nil)
		},
	})
	var off bool
	maint := &cobra.Command{
		Use: "maintenance NAME", Short: "Drain a server (no new reads); --off returns it to service", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			method := "POST"
			if off {
				method = "DELETE"
			}
			var r map[string]any
			if err := c.do(method, "/v1/servers/"+url.PathEscape(args[0])+"/maintenance", &r); err != nil || c.json {
				return err
			}
			fmt.Printf("%s: maintenance %v\n", args[0], r["maintenance"])
			return nil
		},
	}
	maint.Flags().BoolVar(&off, "off", false, "end maintenance")
	cmd.AddCommand(maint)
	cmd.AddCommand(&cobra.Command{
		Use: "switchover NAME", Short: "Make NAME the primary (GTID replication)", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			var r map[string]string
			if err := c.do("POST", "/v1/switchover?to="+url.QueryEscape(args[0]), &r); err != nil || c.json {
				return err
			}
			fmt.Printf("primary: %s\n", r["primary"])
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use: "whoami", Short: "The admin user and role the token belongs to", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var me struct{ User, Role string }
			if err := c.do("GET", "/v1/whoami", &me); err != nil || c.json {
				return err
			}
			fmt.Printf("%s (%s)\n", me.User, me.Role)
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use: "reload", Short: "Re-read the config file (as SIGHUP); a bad config is refused", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var r map[string]bool
			if err := c.do("POST", "/v1/reload", &r); err != nil || c.json {
				return err
			}
			fmt.Println("config reloaded")
			return nil
		},
	})
	return cmd
}

// us formats microseconds for people.
func us(v int64) string {
	return (time.Duration(v) * time.Microsecond).String()
}
