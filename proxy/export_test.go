package proxy

// Ed25519PublicKey is the public key MariaDB's ed25519 plugin stores for
// password, for the tests that compare it with a real server's.
var Ed25519PublicKey = ed25519PublicKey
