package main_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
	"github.com/sluice-proxy/sluice/internal/testenv/testpki"
)

// TestAdminTLS serves the admin API over TLS with client certificates
// required (admin_tls.client_ca): sluice ctl with the CA and a client
// certificate gets through; without the certificate, with another CA, or
// in plain HTTP it does not.
func TestAdminTLS(t *testing.T) {
	pki := t.TempDir()
	if err := testpki.Write(pki, "ops"); err != nil {
		t.Fatal(err)
	}
	f := func(name string) string { return filepath.Join(pki, name) }
	in := &instance{config: filepath.Join(t.TempDir(), "sluice.yaml"), listen: lab.FreeAddr(t), admin: lab.FreeAddr(t), broker: lab.FreeAddr(t)}
	writeConfig(t, in.config, in.listen, in.admin, in.broker, fmt.Sprintf(
		"admin_token: tok-tls\nadmin_tls: {cert: %s, key: %s, client_ca: %s}\n", f("server.pem"), f("server-key.pem"), f("ca.pem")))
	in.Process = lab.StartProcess(t, "sluice", lab.Listening(in.admin), binary, "serve", "--config", in.config)

	ctl := func(args ...string) (string, error) {
		return in.ctl(t, "tok-tls", args...)
	}
	out, err := ctl("--tls-ca", f("ca.pem"), "--tls-cert", f("ops.pem"), "--tls-key", f("ops-key.pem"), "whoami")
	if err != nil || !strings.Contains(out, "admin_token (admin)") {
		t.Fatalf("ctl over TLS with a client certificate: %v\n%s", err, out)
	}
	if out, err := ctl("--tls-ca", f("ca.pem"), "servers"); err == nil {
		t.Fatalf("ctl without a client certificate got through:\n%s", out)
	}
	if out, err := ctl("--tls-ca", f("other-ca.pem"), "--tls-cert", f("ops.pem"), "--tls-key", f("ops-key.pem"), "servers"); err == nil ||
		!strings.Contains(out, "certificate") {
		t.Fatalf("ctl trusting another CA: %v\n%s", err, out)
	}
	if resp, err := http.Get("http://" + in.admin + "/health"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP on the TLS admin listener answered /health")
		}
	}
}
