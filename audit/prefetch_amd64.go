package audit

// prefetch asks the processor to bring b into its cache without waiting for
// it: the producer names the next record while it hashes the current one,
// which takes longer than a miss to memory, so the next is there when it
// starts. (A record it reads first is 200 ms old, out of every cache but
// the last level.)
//
//go:noescape
func prefetch(b []byte)
