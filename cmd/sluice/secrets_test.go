package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// TestSecretsIndirection runs a Sluice whose service user's password comes
// from the environment (${VAR}) and whose admin token comes from a file
// (admin_token_file): the monitor logs in with the one, the API accepts
// the other, and neither appears in GET /v1/config, in --check-config's
// output or in the log.
func TestSecretsIndirection(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte("tok-from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_TEST_MONITOR_PASSWORD", "monpass")
	in := &instance{config: filepath.Join(dir, "sluice.yaml"), listen: lab.FreeAddr(t), admin: lab.FreeAddr(t), broker: lab.FreeAddr(t)}
	writeConfig(t, in.config, in.listen, in.admin, in.broker, "admin_token_file: "+tokenFile+"\n")
	cfg, err := os.ReadFile(in.config)
	if err != nil {
		t.Fatal(err)
	}
	withEnv := strings.Replace(string(cfg), "password: monpass", "password: ${SLUICE_TEST_MONITOR_PASSWORD}", 1)
	if withEnv == string(cfg) {
		t.Fatal("the test config has no service_user password to replace")
	}
	if err := os.WriteFile(in.config, []byte(withEnv), 0o600); err != nil {
		t.Fatal(err)
	}
	check, err := exec.Command(binary, "serve", "--config", in.config, "--check-config").CombinedOutput()
	if err != nil {
		t.Fatalf("--check-config: %v\n%s", err, check)
	}
	// Healthy means the monitor found the primary: it logged in with the
	// password from the environment.
	in.Process = lab.StartProcess(t, "sluice", in.healthy, binary, "serve", "--config", in.config)

	if out, err := in.ctl(t, "tok-from-a-file", "whoami"); err != nil || !strings.Contains(out, "admin_token (admin)") {
		t.Fatalf("ctl whoami with the token from the file: %v %s", err, out)
	}
	shown, err := in.ctl(t, "tok-from-a-file", "config")
	if err != nil {
		t.Fatalf("ctl config: %v %s", err, shown)
	}
	if !strings.Contains(shown, tokenFile) || !strings.Contains(shown, "********") {
		t.Fatalf("ctl config should name the token file and hide secrets:\n%s", shown)
	}
	for where, text := range map[string]string{"/v1/config": shown, "--check-config": string(check), "the log": in.Stderr.String()} {
		for _, secret := range []string{"monpass", "tok-from-a-file"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows the secret %q", where, secret)
			}
		}
	}
	if out, err := in.ctl(t, "tok-wrong", "servers"); err == nil || !strings.Contains(out, "401") && !strings.Contains(out, "token") {
		t.Fatalf("a wrong token: %v %s", err, out)
	}
}
