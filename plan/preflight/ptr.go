package preflight

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/refresh"
	"github.com/mailctl/mailctl/plan/verify"
	"github.com/mailctl/mailctl/providers/ptr"
)

// ptrResults checks, per public IP of the server, that its reverse DNS can
// be set: the ptr provider's API reads the IP's current PTR with the
// configured credentials. It reads only: whether the credential may also
// write shows at apply.
func ptrResults(ctx context.Context, cfg *config.Config, s *config.Server, o Options) []verify.Result {
	var out []verify.Result
	var prov ptr.Provider
	var provErr error
	if s.PTR != nil {
		provs := o.PTR
		if provs == nil {
			one := &config.Config{Dir: cfg.Dir, Servers: []*config.Server{s}}
			provs, provErr = refresh.PTRProviders(one, o.Logger)
		}
		if provErr == nil {
			prov = provs[s.PTR.Addr()]
			if prov == nil {
				provErr = fmt.Errorf("no reverse DNS provider %s", s.PTR.Addr())
			}
		}
	}
	for _, ip := range serverIPs(s) {
		r := verify.Result{Check: CheckPTR, Target: ip.String()}
		switch {
		case !public(ip):
			r.Status, r.Detail = verify.Skip, ip.String()+" is not a public address: it has no reverse DNS to set"
		case s.PTR == nil:
			r.Status = verify.Warn
			r.Detail = fmt.Sprintf("server %q has no ptr provider: mailctl cannot set the reverse DNS of %s", s.Name, ip)
			r.Fix = fmt.Sprintf("set the PTR of %s to %s in your hosting panel (or set ptr = provider.KIND.NAME in server %q)", ip, s.Hostname, s.Name)
		case provErr != nil:
			r.Status, r.Detail = verify.Fail, provErr.Error()
			r.Fix = "fix the provider block " + s.PTR.Addr() + ", then run mailctl preflight again"
		default:
			r = ptrGet(ctx, prov, s, ip, r)
		}
		out = append(out, r)
	}
	return out
}

// ptrGet reads the current PTR through the provider.
func ptrGet(ctx context.Context, prov ptr.Provider, s *config.Server, ip netip.Addr, r verify.Result) verify.Result {
	cur, err := prov.Get(ctx, ip)
	addr := s.PTR.Addr()
	switch {
	case errors.Is(err, ptr.ErrAuth):
		r.Status, r.Detail = verify.Fail, err.Error()
		r.Fix = fmt.Sprintf("give %s a valid credential with access to this server (the detail names the attribute), then run mailctl preflight again", addr)
	case errors.Is(err, ptr.ErrNotFound):
		r.Status, r.Detail = verify.Fail, err.Error()
		r.Fix = fmt.Sprintf("check ipv4/ipv6 of server %q, or use the credentials of the account that holds %s", s.Name, ip)
	case err != nil:
		r.Status, r.Detail = verify.Fail, err.Error()
		r.Fix = fmt.Sprintf("check the endpoint and credentials of %s and that its API is reachable, then run mailctl preflight again", addr)
	case ptr.Canonical(cur) == ptr.Canonical(s.Hostname):
		r.Status, r.Detail = verify.Pass, fmt.Sprintf("PTR is already %s (read through %s)", s.Hostname, addr)
	case cur == "":
		r.Status, r.Detail = verify.Pass, fmt.Sprintf("no PTR yet; %s answers for %s, apply sets it to %s", addr, ip, s.Hostname)
	default:
		r.Status, r.Detail = verify.Pass, fmt.Sprintf("PTR is %s; %s answers for %s, apply sets it to %s", cur, addr, ip, s.Hostname)
	}
	return r
}
