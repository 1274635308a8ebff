package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/mailctl/mailctl/plan/config"
)

// domainServers are the servers of d (all its nodes), or its one Server
// of a Domain built without the list.
func domainServers(d *config.Domain) []*config.Server {
	if len(d.Servers) > 0 {
		return d.Servers
	}
	if d.Server != nil {
		return []*config.Server{d.Server}
	}
	return nil
}

// hostnames are the host names of d's servers: its MX, which its MTA-STS
// policy lists.
func hostnames(d *config.Domain) []string {
	var out []string
	for _, s := range domainServers(d) {
		out = append(out, s.Hostname)
	}
	return out
}

// NodeLoginCheck is the name of the per-server IMAP login check.
const NodeLoginCheck = "imap.login"

// probeNodes returns the servers of addr's domain (nil outside the
// configured domains).
func (r *runner) probeNodes(addr string) []*config.Server {
	if d := r.probeDomain(addr); d != nil {
		return domainServers(d)
	}
	return nil
}

// nodeRoundTrips are, for a probe user whose domain has several servers,
// a round trip through each server after the first (which the round trip
// of the probe's recipient goes through): the probe submitted to that
// server and read back through it must pass SPF, DKIM and DMARC, so that
// every node signs with the published key (apply copies the first
// server's keys to the others). The results name the server.
func (r *runner) nodeRoundTrips(p Probe, target string) []Check {
	nodes := r.probeNodes(p.User)
	if len(nodes) < 2 {
		return nil
	}
	var cs []Check
	for _, s := range nodes[1:] {
		cs = append(cs, Check{Name: RoundTripCheck, Target: target + " via server." + s.Name, Run: func(ctx context.Context) []Result {
			if p.User == "" || p.Password == "" {
				return one(Result{Status: Skip, Detail: "no probe credentials", Fix: FixProbeCredentials})
			}
			res := r.roundTripVia(ctx, p, s, true)
			res.Detail += " (server." + s.Name + ")"
			return one(res)
		}})
	}
	return cs
}

// nodeLogins are, for a probe user whose domain has several servers, an
// IMAP login on each server (the round trip reads through the first):
// every node must know the user, from the store they share.
func (r *runner) nodeLogins(p Probe) []Check {
	if p.IMAPAddr != "" {
		return nil
	}
	nodes := r.probeNodes(p.IMAPUser)
	if len(nodes) < 2 {
		return nil
	}
	var cs []Check
	for _, s := range nodes {
		_, port, implicit, err := serverIMAP(s)
		if err != nil {
			continue
		}
		target := net.JoinHostPort(s.Hostname, strconv.Itoa(port))
		cs = append(cs, Check{Name: NodeLoginCheck, Target: target, Run: func(ctx context.Context) []Result {
			if p.IMAPUser == "" || p.IMAPPassword == "" {
				return one(Result{Status: Skip, Detail: "no probe credentials", Fix: FixProbeCredentials})
			}
			c, err := r.imapLogin(ctx, s.Hostname, port, implicit, p)
			var pe probeError
			switch {
			case errors.As(err, &pe):
				res := pe.result()
				res.Detail += " (server." + s.Name + ")"
				return one(res)
			case err != nil:
				return one(Result{Status: Fail, Detail: fmt.Sprintf("%v (server.%s)", err, s.Name), Fix: "check that " + target + " answers"})
			}
			c.Logout().Wait()
			c.Close()
			return one(Result{Status: Pass, Detail: fmt.Sprintf("%s logged in on server.%s", p.IMAPUser, s.Name)})
		}})
	}
	return cs
}

// named makes the results of a check of server s name it ("(server.b)")
// when the configuration has several servers: its target is a host name
// or an address, and the operator thinks in server names.
func (r *runner) named(s *config.Server, run func(ctx context.Context) []Result) func(ctx context.Context) []Result {
	if len(r.cfg.Servers) < 2 {
		return run
	}
	return func(ctx context.Context) []Result {
		rs := run(ctx)
		for i := range rs {
			if !strings.Contains(rs[i].Detail, "(server."+s.Name+")") {
				rs[i].Detail += " (server." + s.Name + ")"
			}
		}
		return rs
	}
}
