package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/dkimrotate"
	"github.com/mailctl/mailctl/plan/target"
	"github.com/mailctl/mailctl/server/daemon"
)

func init() {
	register(&command{name: "dkim", synopsis: "start a DKIM key rotation ('dkim rotate -domain D'; apply carries it through)", run: runDKIM})
}

// dkimNow is the clock of `dkim rotate` (the new selector carries the
// date); tests replace it.
var dkimNow = time.Now

// runDKIM is "mailctl dkim rotate -domain D": the new selector's keys are
// generated on the server, pending; `mailctl apply` then publishes them,
// waits until every authoritative name server serves them and switches
// signing (plan/dkimrotate).
func runDKIM(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] != "rotate" {
		return errorf(e, "usage: mailctl dkim rotate -domain DOMAIN")
	}
	fs := newFlagSet(e, "dkim rotate", "-domain DOMAIN [-var NAME=VALUE]... [-accept-new-host-key]")
	domain := fs.String("domain", "", "the `DOMAIN` whose DKIM key is rotated")
	acceptNew := fs.Bool("accept-new-host-key", false, "trust and record the SSH host key of a server contacted for the first time")
	vars := addVarFlag(fs)
	if done, code := parseFlags(fs, args[1:]); done {
		return code
	}
	if fs.NArg() > 0 {
		return errorf(e, "dkim rotate: unexpected argument %q", fs.Arg(0))
	}
	if *domain == "" {
		return errorf(e, "dkim rotate needs -domain DOMAIN")
	}
	cfg := loadConfig(e, vars)
	if cfg == nil {
		return exitError
	}
	var d *config.Domain
	for _, dm := range cfg.Domains {
		if strings.EqualFold(dm.Name, *domain) {
			d = dm
		}
	}
	if d == nil {
		return errorf(e, "dkim rotate: %s is not a domain of the configuration", *domain)
	}
	if d.Server == nil {
		return errorf(e, "dkim rotate: domain %s has no server", d.Name)
	}
	conn, err := target.Open(ctx, cfg, d.Server, target.Options{AcceptNewHostKey: *acceptNew, Passphrase: passphrasePrompt(e), Logger: logger(e)})
	if err != nil {
		return errorf(e, "%v", err)
	}
	defer conn.Close()
	st, keys, err := conn.State(ctx)
	if err != nil {
		return errorf(e, "%v", err)
	}
	if st == nil || !st.Running {
		return errorf(e, "dkim rotate: server.%s is not running; run mailctl apply first", d.Server.Name)
	}
	if p := dkimrotate.Pending(keys, d.Name); p != "" {
		fmt.Fprintf(e.Stdout, "A rotation of %s to selector %s is under way. Run 'mailctl apply' to publish it and switch signing.\n", d.Name, p)
		return exitOK
	}
	next, err := dkimrotate.NextSelector(d.DKIM.Selector, dkimNow(), dkimrotate.UsedSelectors(keys, d.Name))
	if err != nil {
		return errorf(e, "dkim rotate: %v", err)
	}
	if err := conn.DKIM(ctx, "rotate", d.Name, next); err != nil {
		return errorf(e, "dkim rotate: %v", err)
	}
	grace := d.DKIM.Grace
	if grace <= 0 {
		grace = config.DefaultDKIMGrace
	}
	fmt.Fprintf(e.Stdout, "Generated the keys of selector %s for %s on server.%s; %s still signs.\n", next, d.Name, d.Server.Name, currentSigner(keys, d.Name))
	fmt.Fprintf(e.Stdout, "Run 'mailctl apply': it publishes %s, waits until every authoritative name server serves it, then switches signing;\n", next)
	fmt.Fprintf(e.Stdout, "the old selector stays published for the grace period (%s) and a later apply removes it.\n", grace)
	return exitOK
}

// currentSigner names the signing selector of domain.
func currentSigner(keys []desired.DKIMKey, domain string) string {
	for _, k := range keys {
		if k.Domain == domain && k.State == "signing" {
			return strings.TrimSuffix(strings.TrimSuffix(k.Selector, "-ed25519"), "-rsa")
		}
	}
	return "the current selector"
}

// runServeDKIM runs a rotation step on the running server: "mailctl serve
// dkim rotate|activate|remove DOMAIN SELECTOR". apply and `dkim rotate`
// call it over SSH; it is not meant to be typed.
func runServeDKIM(ctx context.Context, e *env, args []string) int {
	var pos []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		pos, args = append(pos, args[0]), args[1:]
	}
	fs := newFlagSet(e, "serve dkim", "rotate|activate|remove DOMAIN SELECTOR (-config FILE | -socket PATH)")
	cfgPath := fs.String("config", "", "server configuration `FILE`; its control socket is asked")
	socket := fs.String("socket", "", "control socket `PATH` (instead of -config)")
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if len(pos) != 3 || fs.NArg() > 0 {
		return errorf(e, "usage: mailctl serve dkim rotate|activate|remove DOMAIN SELECTOR (-config FILE | -socket PATH)")
	}
	path, err := controlSocket(*socket, *cfgPath)
	if err != nil {
		return errorf(e, "serve dkim: %v", err)
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Minute) // rsa key generation
	defer cancel()
	if err := daemon.DKIMAction(qctx, path, pos[0], pos[1], pos[2]); err != nil {
		return errorf(e, "%v", err)
	}
	fmt.Fprintf(e.Stdout, "dkim %s %s %s: done.\n", pos[0], pos[1], pos[2])
	return exitOK
}
