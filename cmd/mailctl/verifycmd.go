package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/preflight"
	"github.com/mailctl/mailctl/plan/refresh"
	"github.com/mailctl/mailctl/plan/target"
	"github.com/mailctl/mailctl/plan/verify"
	"github.com/mailctl/mailctl/providers/dns"
)

func init() {
	register(&command{name: "verify", synopsis: "check the live setup: DNS, TLS, ports, relay, blocklists, a round trip", run: runVerify})
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

// verifyFlags are the flags of verify that the verify step of apply
// shares.
type verifyFlags struct {
	ep                       *endpointFlags
	dnsbl                    listFlag
	outboundProbe            *string
	caFile                   *string
	timeout                  *time.Duration
	probeUser, probeTo       *string
	probePasswordFile        *string
	probeWait                *time.Duration
	probeIMAP, probeIMAPUser *string
}

// addVerifyFlags declares the verify flags on fs.
func addVerifyFlags(fs *flag.FlagSet) *verifyFlags {
	f := &verifyFlags{}
	f.ep = addEndpointFlags(fs)
	fs.Var(&f.dnsbl, "dnsbl", "blocklist `ZONES`, comma-separated (default: Spamhaus ZEN, SpamCop, Barracuda, UCEPROTECT 1-3; \"none\" disables)")
	f.outboundProbe = fs.String("outbound-probe", preflight.DefaultProbe, "outbound port 25 check: from each server, read the SMTP greeting of `HOST:PORT`")
	f.caFile = fs.String("ca-file", "", "extra trusted certificate authorities, PEM `FILE`")
	f.timeout = fs.Duration("timeout", 20*time.Second, "time limit of each check")
	f.probeUser = fs.String("probe-user", "", "round trip: submit a probe as this user `ADDRESS` (default $MAILCTL_PROBE_USER)")
	f.probePasswordFile = fs.String("probe-password-file", "", "round trip: read the probe user's password from `FILE` (default $MAILCTL_PROBE_PASSWORD)")
	f.probeTo = fs.String("probe-to", "", "round trip: send the probe to this `ADDRESS` of a configured domain (default: the probe user)")
	f.probeIMAP = fs.String("probe-imap", "", "round trip to an outside address: its IMAPS server `HOST:PORT` (login -probe-imap-user, password $MAILCTL_PROBE_IMAP_PASSWORD)")
	f.probeIMAPUser = fs.String("probe-imap-user", "", "round trip to an outside address: the IMAP `LOGIN` of its mailbox (default: the -probe-to address)")
	f.probeWait = fs.Duration("probe-wait", verify.DefaultProbeWait, "round trip: how long to wait for the probe in the INBOX")
	return f
}

// verifyRun is what runChecks runs.
type verifyRun struct {
	Opts verify.Options
	// Probe is the round trip's account; nil skips the round trip.
	Probe *verify.Probe
	// JSON prints the report as JSON instead of a table.
	JSON bool
	// Keys are the DKIM keys the servers publish (nil: unknown, the dkim
	// checks are skipped).
	Keys []desired.DKIMKey
	// OutboundProbe is the SMTP server the outbound port 25 check dials.
	OutboundProbe string
	provs         map[string]dns.Provider
}

// verifyOptions builds the checks' options from the flags (f nil: the
// defaults) and the environment; only selects checks by name or target.
// The probe password comes from -probe-password-file or
// MAILCTL_PROBE_PASSWORD and is never printed.
func verifyOptions(e *env, cfg *config.Config, f *verifyFlags, only []string) (verifyRun, error) {
	if f == nil {
		f = addVerifyFlags(flag.NewFlagSet("verify", flag.ContinueOnError))
	}
	addrs, err := f.ep.addresses()
	if err != nil {
		return verifyRun{}, err
	}
	opts := verify.Options{Only: only, Timeout: *f.timeout, Logger: logger(e), Addresses: addrs, Resolver: f.ep.resolver()}
	switch {
	case len(f.dnsbl) == 1 && f.dnsbl[0] == "none":
		opts.DNSBLZones = []string{}
	case len(f.dnsbl) > 0:
		opts.DNSBLZones = f.dnsbl
	}
	roots, err := verifyRoots(cfg, *f.caFile)
	if err != nil {
		return verifyRun{}, err
	}
	opts.Roots = roots

	provs, err := refresh.Providers(cfg, logger(e))
	if err != nil {
		return verifyRun{}, err
	}
	if len(f.ep.resolvers) == 0 && onlyZoneFiles(cfg) && len(opts.Only) == 0 {
		// Nothing serves a lab's zone file: check the file and the services.
		opts.Only = []string{"dns.provider", "tls", "smtp", "relay", "addresses"}
	}
	probe, err := probeFromFlags(e, f)
	if err != nil {
		return verifyRun{}, err
	}
	if _, _, err := net.SplitHostPort(*f.outboundProbe); err != nil {
		return verifyRun{}, fmt.Errorf("-outbound-probe wants HOST:PORT, got %q", *f.outboundProbe)
	}
	return verifyRun{Opts: opts, Probe: probe, OutboundProbe: *f.outboundProbe, provs: provs}, nil
}

// addServerChecks completes run with what only the servers know, through
// their open connections: the DKIM keys they publish (so the dkim checks
// compare them with DNS; read only when run.Keys is nil, apply already
// has them), their self-signed certificates (trusted for the TLS checks,
// as the configuration asks for them), and the outbound port 25 check run
// from each SSH server.
func addServerChecks(ctx context.Context, cfg *config.Config, conns map[string]*target.Conn, run *verifyRun) error {
	readKeys := run.Keys == nil
	for _, s := range cfg.Servers {
		c := conns[s.Name]
		if c == nil {
			continue
		}
		if readKeys {
			_, keys, err := c.State(ctx)
			if err != nil {
				return err
			}
			run.Keys = append(run.Keys, keys...)
		}
		if s.TLS.SelfSigned {
			pem, err := c.SelfSignedCert(ctx)
			if err != nil {
				return err
			}
			if pem != nil && !run.Opts.Roots.AppendCertsFromPEM(pem) {
				return fmt.Errorf("server.%s: its self-signed certificate is not PEM", s.Name)
			}
		}
		if s.Local == nil {
			run.Opts.Extra = append(run.Opts.Extra, preflight.Outbound25Check(c.Target(), s, run.OutboundProbe))
		}
	}
	return nil
}

// openServers connects to every server for verify; a server that cannot
// be reached becomes a failed "ssh" check instead of stopping the others.
func openServers(ctx context.Context, e *env, cfg *config.Config) (map[string]*target.Conn, []verify.Check) {
	conns := map[string]*target.Conn{}
	var failed []verify.Check
	for _, s := range cfg.Servers {
		c, err := target.Open(ctx, cfg, s, target.Options{Passphrase: passphrasePrompt(e), Logger: logger(e)})
		if err != nil {
			msg := err.Error()
			failed = append(failed, verify.Check{Name: "ssh", Target: "server." + s.Name, Run: func(context.Context) []verify.Result {
				return []verify.Result{{Status: verify.Fail, Detail: msg,
					Fix: "fix the ssh block (or run mailctl apply first); -servers=false checks without the servers"}}
			}})
			continue
		}
		conns[s.Name] = c
	}
	return conns, failed
}

// probeFromFlags returns the round trip's account, or nil when no user or
// no password is given.
func probeFromFlags(e *env, f *verifyFlags) (*verify.Probe, error) {
	user := *f.probeUser
	if user == "" {
		user = e.Getenv("MAILCTL_PROBE_USER")
	}
	password := e.Getenv("MAILCTL_PROBE_PASSWORD")
	if *f.probePasswordFile != "" {
		b, err := os.ReadFile(*f.probePasswordFile)
		if err != nil {
			return nil, fmt.Errorf("read the probe password: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
		if password == "" {
			return nil, fmt.Errorf("read the probe password: %s is empty", *f.probePasswordFile)
		}
	}
	if user == "" || password == "" {
		if *f.probeTo != "" || *f.probePasswordFile != "" {
			return nil, errors.New("the round trip needs -probe-user (or MAILCTL_PROBE_USER) and a password (-probe-password-file or MAILCTL_PROBE_PASSWORD)")
		}
		return nil, nil
	}
	p := &verify.Probe{User: user, Password: password, To: *f.probeTo, Wait: *f.probeWait}
	if *f.probeIMAP != "" {
		if p.To == "" {
			return nil, errors.New("-probe-imap reads the mailbox of -probe-to: give -probe-to")
		}
		p.IMAPAddr, p.IMAPUser, p.IMAPPassword = *f.probeIMAP, *f.probeIMAPUser, e.Getenv("MAILCTL_PROBE_IMAP_PASSWORD")
		if p.IMAPUser == "" {
			p.IMAPUser = p.To
		}
		if p.IMAPPassword == "" {
			return nil, errors.New("-probe-imap needs the password of " + p.IMAPUser + " in MAILCTL_PROBE_IMAP_PASSWORD")
		}
	}
	return p, nil
}

// runChecks runs the checks with the configuration's desired records,
// prints the report and returns the exit code (0 all pass, 2 some check
// failed).
func runChecks(ctx context.Context, e *env, cfg *config.Config, run verifyRun) int {
	// DNS through the providers: the records the zones hold are the
	// planned ones. It is the only DNS check for zone files nobody serves.
	run.Opts.Extra = append(run.Opts.Extra, verify.Check{Name: "dns.provider", Target: "records", Run: func(ctx context.Context) []verify.Result {
		return providerCheck(ctx, cfg, run.provs, run.Keys)
	}})
	rep := verify.RunAll(ctx, verify.Inputs{Config: cfg, Records: desired.Records(cfg, run.Keys)}, run.Opts, run.Probe)
	if run.JSON {
		if err := verify.WriteJSON(e.Stdout, rep); err != nil {
			return errorf(e, "write results: %v", err)
		}
	} else {
		verify.WriteTable(e.Stdout, rep, e.Color)
	}
	return rep.ExitCode()
}

func runVerify(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "verify", "[-json] [-servers=false] [-resolver HOST:PORT] [-dnsbl ZONES] [-connect HOST:PORT=ADDR]... [-ca-file FILE] [-outbound-probe HOST:PORT] [-probe-user ADDR -probe-password-file FILE [-probe-to ADDR]] [CHECK|TARGET...]")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	f := addVerifyFlags(fs)
	withServers := fs.Bool("servers", true, "read DKIM keys and self-signed certificates from the servers over SSH and check outbound port 25 from them (false: DNS and ports only)")
	vars := addVarFlag(fs)
	setUsageFooter(fs, printCheckNames)
	if done, code := parseFlags(fs, args); done {
		return code
	}
	cfg := loadConfig(e, vars)
	if cfg == nil {
		return exitError
	}
	run, err := verifyOptions(e, cfg, f, fs.Args())
	if err == nil {
		err = checkVerifyArgs(cfg, run, fs.Args())
	}
	if err != nil {
		return errorf(e, "%v", err)
	}
	run.JSON = *asJSON
	if *withServers {
		conns, failed := openServers(ctx, e, cfg)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		run.Opts.Extra = append(run.Opts.Extra, failed...)
		if err := addServerChecks(ctx, cfg, conns, &run); err != nil {
			return errorf(e, "%v", err)
		}
	}
	return runChecks(ctx, e, cfg, run)
}

// providerCheck compares the records at the DNS providers with the plan.
func providerCheck(ctx context.Context, cfg *config.Config, provs map[string]dns.Provider, keys []desired.DKIMKey) []verify.Result {
	p, _, err := refresh.Plan(ctx, cfg, provs, refresh.Options{Keys: keys})
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
			files = append(files, contract.SelfSignedCert(desired.LabDataDir(cfg, s)))
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
