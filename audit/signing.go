package audit

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// LoadSigningKey reads an Ed25519 private key in PKCS#8 PEM, as
// `openssl genpkey -algorithm ed25519` writes it. Its errors name the file
// but never show the key.
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	return loadKey[ed25519.PrivateKey](path, "PRIVATE KEY", x509.ParsePKCS8PrivateKey,
		"not an Ed25519 key; make one with openssl genpkey -algorithm ed25519")
}

// LoadPublicKey reads an Ed25519 public key in PKIX PEM, as
// `openssl pkey -pubout` writes it.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	return loadKey[ed25519.PublicKey](path, "PUBLIC KEY", x509.ParsePKIXPublicKey,
		"not an Ed25519 public key; make it with openssl pkey -in KEY -pubout")
}

// loadKey reads a PEM block of kind from path, parses it and checks that
// it is a K.
func loadKey[K any](path, kind string, parse func([]byte) (any, error), notK string) (K, error) {
	var zero K
	der, err := readPEM(path, kind)
	if err != nil {
		return zero, err
	}
	k, err := parse(der)
	if err != nil {
		return zero, fmt.Errorf("%s: not a %s: %v", path, strings.ToLower(kind), err)
	}
	ek, ok := k.(K)
	if !ok {
		return zero, fmt.Errorf("%s: a %T, %s", path, k, notK)
	}
	return ek, nil
}

func readPEM(path, kind string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot read %s: %v", path, err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block; expected a PEM %q block", path, kind)
	}
	if block.Type != kind {
		return nil, fmt.Errorf("%s: a PEM %q block, expected %q", path, block.Type, kind)
	}
	return block.Bytes, nil
}
