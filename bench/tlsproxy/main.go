// Command tlsproxy is a benchmark helper: it accepts plain TCP on a
// loopback address and forwards each connection over TLS to another
// address (our IMAPS port). The shared benchmark's IMAP client only speaks
// plaintext LOGIN, which mailctl refuses before TLS (RFC 8314 / RFC 9051
// LOGINDISABLED); going through this proxy keeps the server's rules and
// charges the TLS work (and the proxy's memory, as it runs in the server's
// process group) to our side of the comparison.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:2143", "plain `ADDR` to accept on (loopback only)")
	target := flag.String("target", "127.0.0.1:2993", "TLS `ADDR` to forward to")
	flag.Parse()
	host, _, err := net.SplitHostPort(*listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintln(os.Stderr, "tlsproxy: -listen must be a loopback address")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	// The target is our own server on loopback with a self-signed
	// certificate: nothing to verify it against.
	cfg := &tls.Config{InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			u, err := tls.Dial("tcp", *target, cfg)
			if err != nil {
				log.Printf("dial %s: %v", *target, err)
				return
			}
			defer u.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(u, c); u.CloseWrite(); done <- struct{}{} }()
			go func() { io.Copy(c, u); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}
