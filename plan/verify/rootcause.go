package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/plan/config"
)

// Root causes. Before the checks run, Run asks whether the resolver answers
// at all and whether each server answers on any of its ports. When one does
// not, that is reported once, as the failure, and the checks that depend on
// it are reported as skipped because of it: one "the resolver does not
// answer" rather than twenty failures blaming delegation, PTR and MX.

// resolverChecks are the checks that ask Options.Resolver.
var resolverChecks = []string{"dns.ns", "dns.a", "dns.ptr", "dns.mx", "spf", "dkim", "dmarc", "mta-sts", "tls-rpt"}

// portChecks are the checks that connect to a server's ports.
var portChecks = []string{"tls", "smtp.banner", "relay", "smtp.auth"}

// probeTimeout bounds each root-cause probe.
func (r *runner) probeTimeout() time.Duration { return min(r.o.Timeout, 10*time.Second) }

// resolverDown returns the failure of a resolver that does not answer (no
// DNS response at all: a timeout or a refused connection), or nil. A
// resolver that answers, whatever its rcode, is up.
func (r *runner) resolverDown(ctx context.Context) *Result {
	ctx, cancel := context.WithTimeout(ctx, r.probeTimeout())
	defer cancel()
	_, err := r.o.Resolver.Query(ctx, ".", mdns.TypeNS)
	if err == nil || !transportError(err) {
		return nil
	}
	target := "resolver"
	if c, ok := r.o.Resolver.(*DNSClient); ok {
		target = strings.Join(c.Servers, ", ")
	}
	return &Result{Check: "resolver", Target: target, Status: Fail,
		Detail: "the DNS resolver does not answer: " + oneLine(err),
		Fix:    "check the network and the resolver (-resolver HOST:PORT, or /etc/resolv.conf), then run mailctl verify again"}
}

// transportError reports whether err means no DNS answer came back at all.
func transportError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded)
}

// serverDown returns the failure of a server none of whose ports accepts a
// connection, or nil.
func (r *runner) serverDown(ctx context.Context, s *config.Server) *Result {
	var ports []int
	for _, svc := range services(s) {
		ports = append(ports, svc.port)
	}
	for _, p := range []int{s.Ports.SMTP, s.Ports.Submission, s.Ports.Submissions} {
		if p != 0 && !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	if len(ports) == 0 {
		return nil
	}
	slices.Sort(ports)
	ctx, cancel := context.WithTimeout(ctx, r.probeTimeout())
	defer cancel()
	errs := make([]error, len(ports))
	var wg sync.WaitGroup
	for i, p := range ports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := r.dial(ctx, s.Hostname, p)
			if err == nil {
				c.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err == nil {
			return nil
		}
	}
	var ps []string
	for _, p := range ports {
		ps = append(ps, fmt.Sprint(p))
	}
	return &Result{Check: "server", Target: "server." + s.Name, Status: Fail,
		Detail: fmt.Sprintf("%s does not answer on any of its ports (%s): not running, or unreachable from here: %s", s.Hostname, strings.Join(ps, ", "), oneLine(errs[0])),
		Fix:    "start it (mailctl apply; on the server: systemctl status mailctl) or open its ports in the firewall, then run mailctl verify again"}
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// rootCauses probes the resolver and the servers the selected checks need,
// and returns the failures found with the checks replaced by skips where
// their cause failed.
func (r *runner) rootCauses(ctx context.Context, checks []Check) ([]Result, []Check) {
	needDNS := slices.ContainsFunc(checks, func(c Check) bool { return r.needsResolver(c) })
	servers := map[string]*config.Server{} // by hostname, of selected port checks
	for _, c := range checks {
		if !slices.Contains(portChecks, c.Name) || r.cfg == nil {
			continue
		}
		for _, s := range r.cfg.Servers {
			if host, _, err := net.SplitHostPort(c.Target); err == nil && host == s.Hostname {
				servers[s.Hostname] = s
			}
		}
	}
	var mu sync.Mutex
	var causes []Result
	down := map[string]string{} // hostname or "" (the resolver) -> the cause's line
	var wg sync.WaitGroup
	if needDNS {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res := r.resolverDown(ctx); res != nil {
				mu.Lock()
				causes = append(causes, *res)
				down[""] = "the DNS resolver does not answer (see the resolver line)"
				mu.Unlock()
			}
		}()
	}
	for host, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res := r.serverDown(ctx, s); res != nil {
				mu.Lock()
				causes = append(causes, *res)
				down[host] = fmt.Sprintf("server.%s does not answer (see the server line)", s.Name)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(causes) == 0 {
		return nil, checks
	}
	slices.SortFunc(causes, func(a, b Result) int { return strings.Compare(a.Check+a.Target, b.Check+b.Target) })
	out := make([]Check, len(checks))
	for i, c := range checks {
		out[i] = c
		why := ""
		if r.needsResolver(c) {
			why = down[""]
		}
		if host, _, err := net.SplitHostPort(c.Target); err == nil && slices.Contains(portChecks, c.Name) && down[host] != "" {
			why = down[host]
		}
		if why != "" {
			out[i].Run = func(context.Context) []Result {
				return []Result{{Status: Skip, Detail: "not checked: " + why}}
			}
		}
	}
	return causes, out
}

// needsResolver reports whether check c asks Options.Resolver.
func (r *runner) needsResolver(c Check) bool {
	if c.Name == "dns.ns" && r.o.Nameservers != nil {
		return false
	}
	return slices.Contains(resolverChecks, c.Name)
}
