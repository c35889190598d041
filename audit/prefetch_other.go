//go:build !amd64

package audit

// prefetch does nothing here; see prefetch_amd64.go.
func prefetch([]byte) {}
