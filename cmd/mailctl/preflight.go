package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/mailctl/mailctl/plan/preflight"
	"github.com/mailctl/mailctl/plan/verify"
)

func init() {
	register(&command{name: "preflight", synopsis: "check that a server can run mailctl and send mail (before buying or the first apply)", run: runPreflight})
}

const preflightHelp = `Checks, before buying a VPS or before the first apply, whether each server of
the configuration can run mailctl and send mail at all:

  ssh         the server answers on its ssh address, its host key is pinned or
              known (an unknown key fails with its fingerprint and the
              host_key line to pin), the login is root or has sudo
  os          Debian 12+ or Ubuntu 22.04+ LTS, the architecture, systemd as init
  memory      MemAvailable (warn under 256 MiB, fail under 128 MiB)
  disk        free space of / and /var (warn under 2 GiB, fail under 512 MiB)
  ports       the server's ports (25 587 465 143 993 443 80 unless its ports
              block says otherwise) are free or held by mailctl itself
  outbound25  from the server, a connection to -outbound-probe reads an SMTP greeting:
              many providers block outbound port 25
  dnsbl       the server's IPs on DNS blocklists (-dnsbl)
  ptr         the ptr provider's API answers for the server's IPs

A local server (local { } block) is checked on this machine. Exit status:
0 when no check failed (warnings allowed), 2 when one failed, 1 on error.
`

func runPreflight(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "preflight", "[-json] [-server NAME]... [-outbound-probe HOST:PORT] [-resolver HOST:PORT] [-dnsbl ZONES] [-accept-new-host-key]")
	setUsageFooter(fs, func(w io.Writer) { fmt.Fprint(w, preflightHelp) })
	asJSON := fs.Bool("json", false, "print the results as JSON")
	var servers, resolvers, dnsbl listFlag
	fs.Var(&servers, "server", "check only the server `NAME` (repeatable or comma-separated; default: every server)")
	probe := fs.String("outbound-probe", preflight.DefaultProbe, "connect from the server to this SMTP server `HOST:PORT` for the outbound port 25 check")
	fs.Var(&resolvers, "resolver", "recursive resolver `HOST:PORT` for the blocklist queries (default: /etc/resolv.conf)")
	fs.Var(&dnsbl, "dnsbl", "blocklist `ZONES`, comma-separated (default: Spamhaus ZEN, SpamCop, Barracuda, UCEPROTECT 1-3; \"none\" disables)")
	acceptNew := fs.Bool("accept-new-host-key", false, "trust and record the SSH host key of a server contacted for the first time (a changed key is always refused)")
	timeout := fs.Duration("timeout", 60*time.Second, "time limit of each check")
	vars := addVarFlag(fs)
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return errorf(e, "preflight takes no arguments (got %q); use -server NAME to select servers", strings.Join(fs.Args(), " "))
	}
	if _, _, err := net.SplitHostPort(*probe); err != nil {
		return errorf(e, "-outbound-probe wants HOST:PORT, got %q", *probe)
	}
	cfg := loadConfig(e, vars)
	if cfg == nil {
		return exitError
	}
	for _, name := range servers {
		if cfg.ServerByName(name) == nil {
			var names []string
			for _, s := range cfg.Servers {
				names = append(names, s.Name)
			}
			return errorf(e, "no server %q in the configuration (servers: %s)", name, strings.Join(names, ", "))
		}
	}
	opts := preflight.Options{
		Servers:          servers,
		Probe:            *probe,
		AcceptNewHostKey: *acceptNew,
		Passphrase:       passphrasePrompt(e),
		Timeout:          *timeout,
		Logger:           logger(e),
	}
	if len(resolvers) > 0 {
		opts.Resolver = &verify.DNSClient{Servers: resolvers, Recurse: true}
	}
	switch {
	case len(dnsbl) == 1 && dnsbl[0] == "none":
		opts.DNSBLZones = []string{}
	case len(dnsbl) > 0:
		opts.DNSBLZones = dnsbl
	}
	rep := preflight.Run(ctx, cfg, opts)
	if *asJSON {
		if err := verify.WriteJSON(e.Stdout, rep); err != nil {
			return errorf(e, "write results: %v", err)
		}
	} else if err := verify.WriteTable(e.Stdout, rep, e.Color); err != nil {
		return errorf(e, "write results: %v", err)
	}
	return rep.ExitCode()
}
