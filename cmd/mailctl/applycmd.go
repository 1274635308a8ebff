package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/apply"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/propagation"
	"github.com/mailctl/mailctl/plan/render"
)

func init() {
	register(&command{name: "apply", synopsis: "make the real state match the configuration", run: runApply})
}

func runApply(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "apply", "[PLANFILE] [-auto-approve] [-allow-mx-takeover] [-target ADDR]... [-parallelism N] [-var NAME=VALUE]... [-wait DURATION] [-verify=false] [verify's flags: -resolver HOST:PORT -connect HOST:PORT=ADDR ... -probe-user ADDR]")
	autoApprove := fs.Bool("auto-approve", false, "apply without asking for confirmation")
	pf := addPlanFlags(fs)
	wait := fs.Duration("wait", propagation.DefaultTimeout, "after DNS changes, wait up to `DURATION` until every authoritative name server serves them (0: do not wait)")
	doVerify := fs.Bool("verify", true, "end with mailctl verify (exit 2 when a check fails)")
	allowTakeover := fs.Bool("allow-mx-takeover", false, "apply even when the plan repoints the MX of a domain whose mail another service receives today, without a migration block")
	vf := addVerifyFlags(fs)
	ep := vf.ep
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 1 {
		return errorf(e, "apply takes at most one plan file")
	}
	if *wait < 0 {
		return errorf(e, "-wait must be 0 (no wait) or a positive duration, got %s", *wait)
	}
	addrs, err := ep.addresses()
	if err != nil {
		return errorf(e, "%v", err)
	}
	s, code := setup(e, pf)
	if s == nil {
		return code
	}
	defer func() { s.srv.close() }()
	var p *plan.Plan
	if fs.NArg() == 1 {
		saved, err := plan.Load(fs.Arg(0))
		if err != nil {
			return errorf(e, "%v", err)
		}
		if len(pf.targets) > 0 {
			return errorf(e, "-target cannot be used with a saved plan: the plan's targets are %v", saved.Targets)
		}
		pf.targets = saved.Targets
		fresh, code := makePlan(ctx, e, s, pf, false)
		if fresh == nil {
			return code
		}
		if why := stale(saved, fresh); why != "" {
			return errorf(e, "the saved plan %s is stale: %s; run 'mailctl plan -out %s' again", fs.Arg(0), why, fs.Arg(0))
		}
		p = saved
		render.Plan(e.Stdout, p, render.Style{Color: e.Color})
		if code, refused := refuseTakeover(e, p, *allowTakeover); refused {
			return code
		}
	} else {
		var code int
		p, code = makePlan(ctx, e, s, pf, false)
		if p == nil {
			return code
		}
		render.Plan(e.Stdout, p, render.Style{Color: e.Color})
		if !p.HasChanges() {
			return exitOK
		}
		if code, refused := refuseTakeover(e, p, *allowTakeover); refused {
			return code
		}
		if !*autoApprove {
			if code, ok := confirm(e, "apply", "Do you want to perform these actions?", "or apply a saved plan"); !ok {
				return code
			}
		}
	}
	if !p.HasChanges() {
		return exitOK
	}
	fmt.Fprintln(e.Stdout)
	if s.srv == nil {
		return errorf(e, "internal: servers not read")
	}
	eng := s.engine(e, *pf.parallelism)
	eng.Wait = *wait
	eng.Propagation = propagation.Options{Resolver: ep.resolver(), Addresses: addrs}
	eng.Propagation.Terminal, eng.Propagation.Width = stdoutTerminal(e)
	res, err := eng.Apply(ctx, p)
	if res.DKIMKeys != nil {
		s.srv.keys = res.DKIMKeys
	}
	for _, d := range res.Deferred {
		fmt.Fprintf(e.Stdout, "%s: deferred: its value is known only once the server is deployed\n", d)
	}
	if err != nil {
		return applyFailed(e, res, err)
	}
	fmt.Fprintf(e.Stdout, "\nApply complete! Resources: %d added, %d changed, %d destroyed.\n", res.Added, res.Changed, res.Destroyed)
	printConnect(e, s.cfg)
	if !*doVerify || len(pf.targets) > 0 {
		return exitOK
	}
	return verifyAfterApply(ctx, e, s, vf)
}

// applyFailed reports an apply that stopped on err (an error, or Ctrl-C):
// what was done, every error, and which changes were left undone.
func applyFailed(e *env, res apply.Result, err error) int {
	what := "Apply failed."
	if errors.Is(err, context.Canceled) {
		what = "Apply interrupted."
	}
	fmt.Fprintf(e.Stdout, "\n%s Resources: %d added, %d changed, %d destroyed.\n", what, res.Added, res.Changed, res.Destroyed)
	if len(res.NotApplied) > 0 {
		fmt.Fprintf(e.Stdout, "Not applied, or cut off midway (run apply again to finish: each step is idempotent):\n")
		for _, a := range res.NotApplied {
			fmt.Fprintf(e.Stdout, "  - %s\n", a)
		}
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			fmt.Fprintf(e.Stderr, "Error: %s\n", line)
		}
	}
	return exitError
}

// verifyAfterApply is apply's last step: mailctl verify with apply's
// flags, the servers read through apply's connections.
func verifyAfterApply(ctx context.Context, e *env, s *planSetup, vf *verifyFlags) int {
	fmt.Fprintf(e.Stdout, "\nVerifying...\n\n")
	run, err := verifyOptions(e, s.cfg, vf, nil)
	if err != nil {
		return errorf(e, "verify: %v", err)
	}
	// The servers' keys as apply read them back (or as the plan
	// read them, when no server changed).
	run.Keys = s.srv.keys
	if err := addServerChecks(ctx, s.cfg, s.srv.conns, &run); err != nil {
		return errorf(e, "verify: %v", err)
	}
	if code := runChecks(ctx, e, s.cfg, run); code != exitOK {
		fmt.Fprintf(e.Stdout, "\nThe changes are applied, but verify found problems: each failed line above says how to fix it.\n")
		return code
	}
	return exitOK
}

// stale says why a saved plan no longer matches the configuration or the
// state it was made from, or "" when it still does.
func stale(saved, fresh *plan.Plan) string {
	if saved.ConfigDigest != fresh.ConfigDigest {
		return "the configuration changed since the plan was made"
	}
	var changed []string
	for k, d := range saved.State {
		if fresh.State[k] != d {
			changed = append(changed, strings.TrimPrefix(k, "zone:"))
		}
	}
	for k := range fresh.State {
		if _, ok := saved.State[k]; !ok {
			changed = append(changed, strings.TrimPrefix(k, "zone:"))
		}
	}
	if len(changed) > 0 {
		slices.Sort(changed)
		return "the records of " + strings.Join(changed, ", ") + " changed since the plan was made"
	}
	return ""
}

// printConnect tells how to point a mail client, and a calendar and
// contacts client, at each server.
func printConnect(e *env, cfg *config.Config) {
	for _, srv := range cfg.Servers {
		host := srv.Hostname
		if srv.Local != nil {
			host = srv.IPv4.String()
		}
		fmt.Fprintf(e.Stdout, "\nClient settings for server.%s (%s):\n", srv.Name, srv.Hostname)
		if srv.Ports.IMAPS != 0 {
			fmt.Fprintf(e.Stdout, "  IMAP  %s port %d, SSL/TLS, normal password\n", host, srv.Ports.IMAPS)
		}
		if srv.Ports.Submissions != 0 {
			fmt.Fprintf(e.Stdout, "  SMTP  %s port %d, SSL/TLS, normal password", host, srv.Ports.Submissions)
			if srv.Ports.Submission != 0 {
				fmt.Fprintf(e.Stdout, " (or port %d with STARTTLS)", srv.Ports.Submission)
			}
			fmt.Fprintln(e.Stdout)
		}
		if srv.Ports.HTTPS != 0 {
			base := "https://" + net.JoinHostPort(host, strconv.Itoa(srv.Ports.HTTPS))
			if srv.Ports.HTTPS == 443 {
				base = "https://" + host
			}
			fmt.Fprintf(e.Stdout, "  CalDAV   %s/.well-known/caldav (calendars), normal password\n", base)
			fmt.Fprintf(e.Stdout, "  CardDAV  %s/.well-known/carddav (contacts), normal password\n", base)
			fmt.Fprintf(e.Stdout, "  Apple devices: %s/mail.mobileconfig?emailaddress=ADDRESS (a profile with all four)\n", base)
		}
		fmt.Fprintln(e.Stdout, "  user name: the full e-mail address")
		if srv.Local != nil && srv.TLS.SelfSigned {
			fmt.Fprintf(e.Stdout, "  the certificate is self-signed: %s\n", contract.SelfSignedCert(desired.LabDataDir(cfg, srv)))
		}
	}
}

// confirm asks for "yes" on a terminal before a command changes anything.
// It returns ok, or the exit code to return: an error when stdin is not a
// terminal (the user must pass -auto-approve), a cancellation otherwise.
func confirm(e *env, cmd, question, alternative string) (int, bool) {
	if !e.IsTerminal {
		msg := fmt.Sprintf("%s needs confirmation: stdin is not a terminal, so run 'mailctl %s -auto-approve'", cmd, cmd)
		if alternative != "" {
			msg += " " + alternative
		}
		return errorf(e, "%s", msg), false
	}
	fmt.Fprintf(e.Stdout, "\n%s\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ", question)
	line, _ := bufio.NewReader(e.Stdin).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		fmt.Fprintf(e.Stdout, "\n%s cancelled.\n", strings.ToUpper(cmd[:1])+cmd[1:])
		return exitError, false
	}
	return exitOK, true
}
