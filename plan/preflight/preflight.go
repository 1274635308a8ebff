// Package preflight runs the checks of `mailctl preflight`: before buying a
// VPS, or before the first apply, they decide whether a server can run
// mailctl and send mail at all.
//
// Per server, over one SSH connection (RFC 4251-4254, through package
// remote; this machine for a local target):
//
//   - ssh: the server is reachable, its host key is pinned or known (an
//     unknown or changed key fails with its fingerprint and the host_key
//     line that pins it) and the login is root or has password-less sudo;
//   - os: /etc/os-release names a supported Debian or Ubuntu release, the
//     machine's architecture matches this binary's, systemd runs as init;
//   - memory: MemAvailable of /proc/meminfo;
//   - disk: free space of / and /var (df -Pk, POSIX output format);
//   - ports: the server's ports (SMTP 25, submission 587 and 465, IMAP 143
//     and 993, HTTPS 443, HTTP 80 unless configured otherwise) are not
//     listened on by another program (/proc/net/tcp and tcp6, owners found
//     through /proc/PID/fd); a port held by mailctl itself passes;
//   - outbound25: from the server, a TCP connection to a probe MX (default
//     gmail-smtp-in.l.google.com:25) reads an SMTP 220 greeting (RFC 5321
//     section 4.2 and 4.3.1). Many providers block outbound port 25.
//
// And from this machine, per server IP:
//
//   - dnsbl: the IP on DNS blocklists (RFC 5782), through package verify;
//   - ptr: the reverse DNS (RFC 1035 section 3.5, RFC 3596 section 2.5)
//     can be set: the ptr provider's API answers for the IP with the
//     configured credentials.
//
// Results are verify.Results, so the report renders with verify.WriteTable
// and verify.WriteJSON. Every endpoint (SSH address, probe, resolver,
// blocklists, hosting API) comes from the configuration or Options, so
// tests point the checks at local servers.
package preflight

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/verify"
	"github.com/mailctl/mailctl/providers/ptr"
)

// DefaultProbe is the address the outbound port 25 check connects to from
// the server: an MX of gmail.com, which always answers.
const DefaultProbe = "gmail-smtp-in.l.google.com:25"

// Check names, in report order.
const (
	CheckSSH        = "ssh"
	CheckOS         = "os"
	CheckMemory     = "memory"
	CheckDisk       = "disk"
	CheckPorts      = "ports"
	CheckOutbound25 = "outbound25"
	CheckDNSBL      = "dnsbl"
	CheckPTR        = "ptr"
)

// Options carry every endpoint and setting of Run. The zero value checks
// every server of the configuration against the real Internet.
type Options struct {
	// Servers selects servers by name; empty means every server.
	Servers []string
	// Probe is the host:port the server connects to for the outbound
	// port 25 check; default DefaultProbe.
	Probe string
	// ProbeTimeout bounds the connection and the greeting; default 10s.
	ProbeTimeout time.Duration
	// Resolver answers the blocklist queries; default the name servers of
	// /etc/resolv.conf.
	Resolver verify.Resolver
	// DNSBLZones are the blocklists; nil means verify.DefaultDNSBLZones,
	// an empty non-nil slice disables the check.
	DNSBLZones []string
	// PTR holds the reverse DNS providers by address (provider.KIND.NAME);
	// nil builds them from the configuration.
	PTR map[string]ptr.Provider
	// AcceptNewHostKey records the key of a server contacted for the first
	// time in its known_hosts file (never a changed key).
	AcceptNewHostKey bool
	// Passphrase asks for the passphrase of an encrypted SSH key.
	Passphrase func(keyFile string) ([]byte, error)
	// HomeDir is where ~ points for SSH files; default the user's home.
	HomeDir string
	// Timeout bounds each check (the SSH connection is one); default 60s,
	// as every step is slow on a small or emulated server.
	Timeout time.Duration
	// Logger receives debug logs; nil discards.
	Logger *slog.Logger
}

// Run runs the checks of every selected server and returns their results:
// per server ssh, os, memory, disk, ports and outbound25, then dnsbl and
// ptr per IP. The checks that need the server are skipped when it cannot
// be reached.
func Run(ctx context.Context, cfg *config.Config, o Options) verify.Report {
	if o.Probe == "" {
		o.Probe = DefaultProbe
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = 10 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var servers []*config.Server
	var rep verify.Report
	for _, name := range o.Servers {
		if cfg.ServerByName(name) == nil {
			rep.Results = append(rep.Results, verify.Result{Check: "server", Target: name, Status: verify.Fail,
				Detail: fmt.Sprintf("no server %q in the configuration", name), Fix: "name a server block of the configuration"})
		}
	}
	for _, s := range cfg.Servers {
		if len(o.Servers) == 0 || slices.Contains(o.Servers, s.Name) {
			servers = append(servers, s)
		}
	}
	out := make([][]verify.Result, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = runServer(ctx, cfg, s, o)
		}()
	}
	wg.Wait()
	for _, rs := range out {
		rep.Results = append(rep.Results, rs...)
	}
	return rep
}

// runServer runs the checks of one server: the remote ones after the
// connection, the DNSBL and PTR ones meanwhile.
func runServer(ctx context.Context, cfg *config.Config, s *config.Server, o Options) []verify.Result {
	var netRes []verify.Result
	done := make(chan struct{})
	go func() {
		defer close(done)
		netRes = append(dnsblResults(ctx, s, o), ptrResults(ctx, cfg, s, o)...)
	}()

	var remoteRes []verify.Result
	t, sshRes := connect(ctx, s, o)
	remoteRes = append(remoteRes, sshRes)
	checks := []verify.Check{
		{Name: CheckOS, Run: func(ctx context.Context) []verify.Result { return one(checkOS(ctx, t, s)) }},
		{Name: CheckMemory, Run: func(ctx context.Context) []verify.Result { return one(checkMemory(ctx, t)) }},
		{Name: CheckDisk, Run: func(ctx context.Context) []verify.Result { return one(checkDisk(ctx, t)) }},
		{Name: CheckPorts, Run: func(ctx context.Context) []verify.Result { return one(checkPorts(ctx, t, s)) }},
		outbound25Check(t, s, o.Probe, o.ProbeTimeout),
	}
	if t == nil {
		for _, c := range checks {
			remoteRes = append(remoteRes, verify.Result{Check: c.Name, Target: s.Hostname, Status: verify.Skip,
				Detail: "not checked: the server could not be reached over SSH"})
		}
	} else {
		defer t.Close()
		for i := range checks {
			checks[i].Target = s.Hostname
		}
		remoteRes = append(remoteRes, runChecks(ctx, o.Logger, checks, o.Timeout)...)
	}
	<-done
	return append(remoteRes, netRes...)
}

func one(r verify.Result) []verify.Result { return []verify.Result{r} }

// runChecks runs checks in parallel, each under timeout, and returns their
// results in check order; results without Check or Target get the
// Check's.
func runChecks(ctx context.Context, log *slog.Logger, checks []verify.Check, timeout time.Duration) []verify.Result {
	out := make([][]verify.Result, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			rs := c.Run(cctx)
			if len(rs) == 0 {
				rs = one(verify.Result{Status: verify.Fail, Detail: fmt.Sprintf("no answer within %s", timeout),
					Fix: "check that the server is reachable and not overloaded, then run mailctl preflight again"})
			}
			for j := range rs {
				if rs[j].Check == "" {
					rs[j].Check = c.Name
				}
				if rs[j].Target == "" {
					rs[j].Target = c.Target
				}
				log.Debug("check done", "check", rs[j].Check, "target", rs[j].Target, "status", rs[j].Status.String(), "duration", time.Since(start))
			}
			out[i] = rs
		}()
	}
	wg.Wait()
	var res []verify.Result
	for _, rs := range out {
		res = append(res, rs...)
	}
	return res
}

// serverIPs lists the server's addresses, IPv4 first.
func serverIPs(s *config.Server) []netip.Addr {
	var out []netip.Addr
	for _, ip := range []netip.Addr{s.IPv4, s.IPv6} {
		if ip.IsValid() {
			out = append(out, ip)
		}
	}
	return out
}

// public reports whether ip is reachable from the Internet, as verify
// decides it (documentation ranges count: tests use them).
func public(ip netip.Addr) bool { return ip.IsGlobalUnicast() && !ip.IsPrivate() }

// dnsblResults runs verify's blocklist check for the server's IPs.
func dnsblResults(ctx context.Context, s *config.Server, o Options) []verify.Result {
	if o.DNSBLZones != nil && len(o.DNSBLZones) == 0 {
		var out []verify.Result
		for _, ip := range serverIPs(s) {
			out = append(out, verify.Result{Check: CheckDNSBL, Target: ip.String(), Status: verify.Skip, Detail: "blocklist check disabled"})
		}
		return out
	}
	// Private addresses (a lab) are never listed: no query, and no
	// resolver needed.
	srv := &config.Server{Name: s.Name, Hostname: s.Hostname}
	var out []verify.Result
	for _, ip := range serverIPs(s) {
		switch {
		case !public(ip):
			out = append(out, verify.Result{Check: CheckDNSBL, Target: ip.String(), Status: verify.Skip,
				Detail: ip.String() + " is not a public address: blocklists do not list it"})
		case ip.Is4():
			srv.IPv4 = ip
		default:
			srv.IPv6 = ip
		}
	}
	if len(serverIPs(srv)) == 0 {
		return out
	}
	one := &config.Config{Servers: []*config.Server{srv}}
	rep := verify.Run(ctx, verify.Inputs{Config: one, Records: []desired.RRSet{}}, verify.Options{
		Resolver:   o.Resolver,
		DNSBLZones: o.DNSBLZones,
		Only:       []string{CheckDNSBL},
		Timeout:    o.Timeout,
		Logger:     o.Logger,
	})
	return append(out, rep.Results...)
}

// splitProbe checks a probe address: host:port with a host name or IP.
func splitProbe(probe string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(probe)
	if err != nil {
		return "", "", fmt.Errorf("probe %q: %w", probe, err)
	}
	if host == "" || port == "" || strings.ContainsAny(host, " /'\"\\$`;&|<>") {
		return "", "", fmt.Errorf("probe %q is not a host:port address", probe)
	}
	return host, port, nil
}
