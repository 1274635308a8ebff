package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/refresh"
	"github.com/mailctl/mailctl/plan/verify"
	"github.com/mailctl/mailctl/providers/dns"
)

func init() {
	register(&command{name: "verify", synopsis: "check the live setup: DNS, TLS, ports, relay, blocklists", run: runVerify})
}

// listFlag is a repeatable or comma-separated string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

func runVerify(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "verify", "[-json] [-resolver HOST:PORT] [-dnsbl ZONES] [-connect HOST:PORT=ADDR]... [-ca-file FILE] [CHECK|TARGET...]")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	var resolvers, dnsbl, connect listFlag
	fs.Var(&resolvers, "resolver", "recursive resolver `HOST:PORT` for the checks (default: /etc/resolv.conf)")
	fs.Var(&dnsbl, "dnsbl", "blocklist `ZONES`, comma-separated (default: Spamhaus ZEN, SpamCop, Barracuda, UCEPROTECT 1-3; \"none\" disables)")
	fs.Var(&connect, "connect", "dial `HOST:PORT=ADDR` instead of HOST:PORT (repeatable)")
	caFile := fs.String("ca-file", "", "extra trusted certificate authorities, PEM `FILE`")
	timeout := fs.Duration("timeout", 20*time.Second, "time limit of each check")
	vars := addVarFlag(fs)
	if done, code := parseFlags(fs, args); done {
		return code
	}
	cfg := loadConfig(e, vars)
	if cfg == nil {
		return exitError
	}
	opts := verify.Options{Only: fs.Args(), Timeout: *timeout, Logger: logger(e), Addresses: map[string]string{}}
	if len(resolvers) > 0 {
		opts.Resolver = &verify.DNSClient{Servers: resolvers, Recurse: true}
	}
	switch {
	case len(dnsbl) == 1 && dnsbl[0] == "none":
		opts.DNSBLZones = []string{}
	case len(dnsbl) > 0:
		opts.DNSBLZones = dnsbl
	}
	for _, c := range connect {
		from, to, ok := strings.Cut(c, "=")
		if !ok {
			return errorf(e, "-connect wants HOST:PORT=ADDR, got %q", c)
		}
		opts.Addresses[from] = to
	}
	roots, err := verifyRoots(cfg, *caFile)
	if err != nil {
		return errorf(e, "%v", err)
	}
	opts.Roots = roots

	// DNS through the providers: the records the zone holds are the planned
	// ones. It is the only DNS check for zone files nobody serves yet.
	provs, err := refresh.Providers(cfg, logger(e))
	if err != nil {
		return errorf(e, "%v", err)
	}
	opts.Extra = append(opts.Extra, verify.Check{Name: "dns.provider", Target: "records", Run: func(ctx context.Context) []verify.Result {
		return providerCheck(ctx, cfg, provs)
	}})
	if len(resolvers) == 0 && onlyZoneFiles(cfg) && len(opts.Only) == 0 {
		// Nothing serves a lab's zone file: check the file and the services.
		opts.Only = []string{"dns.provider", "tls", "smtp", "relay", "addresses"}
	}
	rep := verify.Run(ctx, verify.Inputs{Config: cfg, Records: desired.Records(cfg, nil)}, opts)
	if *asJSON {
		if err := verify.WriteJSON(e.Stdout, rep); err != nil {
			return errorf(e, "write results: %v", err)
		}
	} else {
		verify.WriteTable(e.Stdout, rep, e.Color)
	}
	return rep.ExitCode()
}

// providerCheck compares the records at the DNS providers with the plan.
func providerCheck(ctx context.Context, cfg *config.Config, provs map[string]dns.Provider) []verify.Result {
	p, _, err := refresh.Plan(ctx, cfg, provs, refresh.Options{})
	if err != nil {
		return []verify.Result{{Check: "dns.provider", Target: "records", Status: verify.Fail, Detail: err.Error(),
			Fix: "check the provider's credentials and zone, then run mailctl plan"}}
	}
	var pending, unknown []string
	for _, c := range p.Changes {
		switch {
		case c.Action == plan.NoOp:
		case c.AfterUnknown:
			unknown = append(unknown, c.Address)
		default:
			pending = append(pending, c.Address)
		}
	}
	if len(pending) > 0 {
		return []verify.Result{{Check: "dns.provider", Target: "records", Status: verify.Fail,
			Detail: fmt.Sprintf("%d record set(s) differ from the configuration: %s", len(pending), strings.Join(pending, ", ")),
			Fix:    "run mailctl apply"}}
	}
	r := verify.Result{Check: "dns.provider", Target: "records", Status: verify.Pass, Detail: "every owned record is as planned"}
	if len(unknown) > 0 {
		r.Detail += fmt.Sprintf(" (%d DKIM record(s) wait for the server's keys)", len(unknown))
	}
	return []verify.Result{r}
}

func onlyZoneFiles(cfg *config.Config) bool {
	for _, d := range cfg.Domains {
		if d.DNS == nil || d.DNS.Kind != "zonefile" {
			return false
		}
	}
	return len(cfg.Domains) > 0
}

// verifyRoots returns the system roots plus caFile, plus the self-signed
// certificates of local (lab) servers.
func verifyRoots(cfg *config.Config, caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	files := []string{}
	if caFile != "" {
		files = append(files, caFile)
	}
	for _, s := range cfg.Servers {
		if s.Local != nil && s.TLS.SelfSigned {
			files = append(files, filepath.Join(desired.LocalDir(cfg, s), "data", "tls", "self-signed.crt"))
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			if f != caFile && os.IsNotExist(err) {
				continue // the lab is not up yet: its checks will say so
			}
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("read CA file %s: no PEM certificate", f)
		}
	}
	return pool, nil
}
