// Command dnsstub is a benchmark helper: a DNS server on a loopback address
// that answers every question at once with NXDOMAIN (RFC 1035 RCODE 3),
// over UDP and TCP. bench/run.sh points the inbound checks of the server
// under test at it, so that SPF (RFC 7208), DMARC (RFC 7489) and iprev
// lookups get a real, fast "no such name", as from a local caching
// resolver, instead of a refused port. Like a real resolver's, the answer
// carries the SOA of the (root) zone in its authority section, whose
// minimum says how long the "no such name" may be cached (RFC 2308
// section 3).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/miekg/dns"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5354", "UDP and TCP address (loopback only)")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*listen, logger); err != nil {
		fmt.Fprintln(os.Stderr, "dnsstub:", err)
		os.Exit(1)
	}
}

func run(listen string, logger *slog.Logger) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen must be a loopback address, not %q", listen)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(q, dns.RcodeNameError)
		m.Authoritative = true
		m.RecursionAvailable = true
		m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
			Ns: "a.root-servers.net.", Mbox: "nstld.verisign-grs.com.", Serial: 2026112300,
			Refresh: 1800, Retry: 900, Expire: 604800, Minttl: 300}}
		w.WriteMsg(m)
	})
	errs := make(chan error, 2)
	var servers []*dns.Server
	for _, network := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: listen, Net: network, Handler: handler}
		servers = append(servers, srv)
		go func() { errs <- srv.ListenAndServe() }()
	}
	logger.Info("dnsstub answering NXDOMAIN", "listen", listen)
	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
	}
	for _, srv := range servers {
		srv.Shutdown()
	}
	return nil
}
