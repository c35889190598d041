// Command gorelay is the benchmark's floor for a proxy written in Go: a TCP
// relay that copies bytes both ways with io.Copy, one goroutine per
// direction, as little as Go code can do per query. Sluice's figures beside
// it tell its own cost from what Go's runtime costs any proxy.
//
//	gorelay -listen 127.0.0.1:7020 -backend 127.0.0.1:3306
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"sync"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to accept clients on")
	backend := flag.String("backend", "", "server address every client is relayed to")
	flag.Parse()
	if *backend == "" {
		log.Fatal("gorelay: -backend is required")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("gorelay: %v", err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatalf("gorelay: accept: %v", err)
		}
		go relay(c, *backend)
	}
}

// relay copies between client and a new connection to backend until
// either side closes.
func relay(client net.Conn, backend string) {
	defer client.Close()
	server, err := net.Dial("tcp", backend)
	if err != nil {
		log.Printf("gorelay: dial %s: %v", backend, err)
		return
	}
	defer server.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		io.Copy(server, client)
		server.(*net.TCPConn).CloseWrite()
	})
	io.Copy(client, server)
	client.(*net.TCPConn).CloseWrite()
	wg.Wait()
}
