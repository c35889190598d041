// Package testpki writes a throwaway PKI for tests: a CA, a server
// certificate for 127.0.0.1 and localhost signed by it, client
// certificates, and an unrelated CA. Test harness only.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Write makes, in dir: ca.pem (the CA), server.pem and server-key.pem (a
// server certificate for 127.0.0.1 and localhost signed by the CA),
// other-ca.pem (an unrelated CA), and for each name of clients
// <name>.pem and <name>-key.pem, a client certificate with that common
// name signed by the CA. Keys are ECDSA P-256 in PKCS#8; everything is
// valid from an hour ago for a day.
func Write(dir string, clients ...string) error {
	now := time.Now()
	serial := int64(0)
	template := func(cn string) *x509.Certificate {
		serial++
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)}
	}
	writePEM := func(name, typ string, der []byte) error {
		return os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
	}
	// issue signs tmpl's certificate with parent's key (self-signed when
	// parent is nil) and writes it, and its key when keyName is set.
	issue := func(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, certName, keyName string) (*ecdsa.PrivateKey, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			return nil, err
		}
		if err := writePEM(certName, "CERTIFICATE", der); err != nil {
			return nil, err
		}
		if keyName != "" {
			kder, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				return nil, err
			}
			if err := writePEM(keyName, "PRIVATE KEY", kder); err != nil {
				return nil, err
			}
		}
		return key, nil
	}
	newCA := func(cn string) *x509.Certificate {
		c := template(cn)
		c.IsCA, c.BasicConstraintsValid, c.KeyUsage = true, true, x509.KeyUsageCertSign
		return c
	}
	ca := newCA("sluice test CA")
	caKey, err := issue(ca, nil, nil, "ca.pem", "")
	if err != nil {
		return err
	}
	server := template("127.0.0.1")
	server.IPAddresses, server.DNSNames = []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}
	server.KeyUsage, server.ExtKeyUsage = x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if _, err := issue(server, ca, caKey, "server.pem", "server-key.pem"); err != nil {
		return err
	}
	if _, err := issue(newCA("another CA"), nil, nil, "other-ca.pem", ""); err != nil {
		return err
	}
	for _, name := range clients {
		c := template(name)
		c.KeyUsage, c.ExtKeyUsage = x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		if _, err := issue(c, ca, caKey, name+".pem", name+"-key.pem"); err != nil {
			return err
		}
	}
	return nil
}
