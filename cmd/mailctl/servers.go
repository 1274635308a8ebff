package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"golang.org/x/term"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/apply"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/refresh"
	"github.com/mailctl/mailctl/plan/target"
)

// serverFlags say how servers are reached and what is deployed.
type serverFlags struct {
	binary    *string
	acceptNew *bool
}

func addServerFlags(fs *flag.FlagSet) *serverFlags {
	return &serverFlags{
		binary:    fs.String("server-binary", "", "deploy this mailctl `FILE` (default: this executable; needed when the server's OS or architecture differs)"),
		acceptNew: fs.Bool("accept-new-host-key", false, "trust and record the SSH host key of a server contacted for the first time (a changed key is always refused)"),
	}
}

// servers is the state of the contacted servers.
type servers struct {
	binary target.Binary
	conns  map[string]*target.Conn
	plans  map[string]refresh.ServerPlan
	config map[string][]byte // generated server.json per server
	keys   []desired.DKIMKey
}

// engine is the apply engine for the providers and contacted servers.
func (s *planSetup) engine(e *env, parallelism int) *apply.Engine {
	eng := &apply.Engine{DNS: s.provs, PTR: s.ptrs, Servers: map[string]apply.Server{},
		Options: apply.Options{Parallelism: parallelism, Progress: e.Stdout, Logger: logger(e)}}
	if s.srv != nil {
		eng.Binary, eng.Configs = s.srv.binary, s.srv.config
		for name, c := range s.srv.conns {
			eng.Servers[name] = c
		}
		eng.Nodes = nodesOf(s.cfg)
	}
	return eng
}

func (s *servers) close() {
	if s == nil {
		return
	}
	for _, c := range s.conns {
		c.Close()
	}
}

// serverContacted reports whether a plan with targets reads and changes
// server name: every server without targets; with targets, a server that a
// target names (server.NAME, or a user. or dkim. address).
func serverContacted(name string, targets []string) bool {
	if len(targets) == 0 {
		return true
	}
	for _, t := range targets {
		if t == "server" || strings.HasPrefix("server."+name, t) || strings.HasPrefix(t, "server."+name) ||
			strings.HasPrefix(t, "user.") || strings.HasPrefix(t, "dkim.") {
			return true
		}
	}
	return false
}

// readServers connects to the servers the plan includes and reads them
// back. A server that cannot be reached is left out of the result and its
// error is returned with those of the others, joined: every failure is
// reported, and the servers that could be read stay usable.
func readServers(ctx context.Context, e *env, cfg *config.Config, sf *serverFlags, targets []string, progress *plan.Progress) (*servers, error) {
	out := &servers{conns: map[string]*target.Conn{}, plans: map[string]refresh.ServerPlan{}, config: map[string][]byte{}}
	contacted := contactedServers(cfg, targets)
	if !slices.ContainsFunc(cfg.Servers, func(s *config.Server) bool { return contacted[s.Name] }) {
		return out, nil // a DNS-only plan: no binary to hash (33 MB)
	}
	bin := *sf.binary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find this executable to deploy (use -server-binary): %w", err)
		}
		bin = exe
	}
	b, err := target.LoadBinary(version, bin)
	if err != nil {
		return nil, err
	}
	out.binary = b
	var errs []error
	for _, s := range cfg.Servers {
		if !contacted[s.Name] {
			continue
		}
		where := "this machine"
		if s.SSH != nil {
			where = s.SSH.Address
		}
		done := progress.Start(fmt.Sprintf("server.%s: Still connecting to %s", s.Name, where))
		conn, err := target.Open(ctx, cfg, s, target.Options{AcceptNewHostKey: *sf.acceptNew, Passphrase: passphrasePrompt(e), Logger: logger(e)})
		done()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.conns[s.Name] = conn
		done = progress.Start(fmt.Sprintf("server.%s: Still reading the server's state", s.Name))
		before, keys, err := conn.State(ctx)
		done()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		after, js, err := target.Desired(cfg, s, b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.plans[s.Name] = refresh.ServerPlan{Before: before, After: after}
		out.config[s.Name] = js
		out.keys = append(out.keys, keys...)
		if s.Store != nil {
			sp := out.plans[s.Name]
			sp.Store = readStore(ctx, conn, s, before, progress)
			out.plans[s.Name] = sp
		}
	}
	out.dkimDiffers(cfg)
	return out, errors.Join(errs...)
}

// passphrasePrompt asks for an SSH key passphrase on the terminal.
func passphrasePrompt(e *env) func(string) ([]byte, error) {
	if !e.IsTerminal {
		return nil
	}
	return func(keyFile string) ([]byte, error) {
		fmt.Fprintf(e.Stderr, "Passphrase for %s: ", keyFile)
		pw, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(e.Stderr)
		return pw, err
	}
}
