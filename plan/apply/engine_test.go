package apply_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/apply"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/target"
	"github.com/mailctl/mailctl/providers/dns"
	"github.com/mailctl/mailctl/providers/dns/dnsmem"
	"github.com/mailctl/mailctl/providers/ptr"
	"github.com/mailctl/mailctl/remote"
)

// journal records the engine's calls in order.
type journal struct {
	mu    sync.Mutex
	calls []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls = append(j.calls, s)
}

func (j *journal) String() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return strings.Join(j.calls, "\n")
}

// fakeServer deploys nothing and reports one DKIM key.
type fakeServer struct {
	name    string
	j       *journal
	key     desired.DKIMKey
	fail    error
	config  []byte
	purged  bool
	destroy bool
}

func (s *fakeServer) Name() string { return s.name }
func (s *fakeServer) Deploy(_ context.Context, _ target.Binary, cfg []byte, _ []string) (remote.DeployResult, error) {
	s.j.add("deploy " + s.name)
	s.config = cfg
	if s.fail != nil {
		return remote.DeployResult{}, s.fail
	}
	return remote.DeployResult{Release: "1.0-abc", Actions: []string{"install release 1.0-abc"}}, nil
}
func (s *fakeServer) State(context.Context) (*plan.ServerState, []desired.DKIMKey, error) {
	s.j.add("state " + s.name)
	return &plan.ServerState{Running: true}, []desired.DKIMKey{s.key}, nil
}
func (s *fakeServer) Destroy(_ context.Context, purge bool) (bool, error) {
	s.j.add("destroy " + s.name)
	s.destroy, s.purged = true, purge
	return true, nil
}

// journalDNS wraps a provider to journal its applies.
type journalDNS struct {
	dns.Provider
	j *journal
}

func (p journalDNS) Apply(ctx context.Context, zone string, del, add []libdns.RR) error {
	var names []string
	for _, rr := range add {
		names = append(names, rr.Name+" "+rr.Type+" "+rr.Data)
	}
	for _, rr := range del {
		names = append(names, "-"+rr.Name+" "+rr.Type)
	}
	p.j.add("dns " + strings.Join(names, ", "))
	return p.Provider.Apply(ctx, zone, del, add)
}

type journalPTR struct{ j *journal }

func (p journalPTR) Get(context.Context, netip.Addr) (string, error) { return "", nil }
func (p journalPTR) Set(_ context.Context, ip netip.Addr, host string) error {
	p.j.add("ptr " + ip.String() + " " + host)
	return nil
}

const prov = "provider.dnsmem.test"

func rrset(values ...string) *plan.RRSet {
	return &plan.RRSet{TTL: 300, Values: values}
}

// applyPlan has a server to deploy, a user, a DKIM record known only once
// the server made its key, an MX created, an A record replaced (CNAME to
// A) and a PTR.
func applyPlan() *plan.Plan {
	return &plan.Plan{Changes: []plan.Change{
		{Address: "server.mx1", Type: plan.KindServer, Action: plan.Create},
		{Address: "user.alice@example.org", Type: plan.KindUser, Action: plan.Create},
		{Address: "dns.example.org.mx1-ed25519._domainkey.TXT", Type: plan.KindDNSRRset, Action: plan.Create, Provider: prov, Zone: "example.org",
			Domain: "example.org", Name: "mx1-ed25519._domainkey", RRType: "TXT", After: rrset(), AfterUnknown: true},
		{Address: "dns.example.org.@.MX", Type: plan.KindDNSRRset, Action: plan.Create, Provider: prov, Zone: "example.org",
			Domain: "example.org", Name: "@", RRType: "MX", After: rrset("10 mx1.example.org.")},
		{Address: "dns.example.org.mail.A", Type: plan.KindDNSRRset, Action: plan.Replace, Provider: prov, Zone: "example.org",
			Domain: "example.org", Name: "mail", RRType: "A", Before: rrset("192.0.2.9"), After: rrset("192.0.2.1")},
		{Address: "ptr.192.0.2.1", Type: plan.KindPTR, Action: plan.Create, Provider: "provider.ptr.test", Name: "192.0.2.1",
			After: &plan.RRSet{Values: []string{"mx1.example.org."}}},
	}}
}

func TestEngineApply(t *testing.T) {
	t.Parallel()
	j := &journal{}
	mem := dnsmem.New("example.org")
	mem.Seed("example.org", libdns.RR{Name: "mail", Type: "A", Data: "192.0.2.9", TTL: 300})
	srv := &fakeServer{name: "mx1", j: j, key: desired.DKIMKey{Domain: "example.org", Selector: "mx1-ed25519", Record: "v=DKIM1; k=ed25519; p=KEY"}}
	var out strings.Builder
	eng := &apply.Engine{
		DNS: map[string]dns.Provider{prov: journalDNS{mem, j}}, PTR: map[string]ptr.Provider{"provider.ptr.test": journalPTR{j}},
		Servers: map[string]apply.Server{"mx1": srv}, Configs: map[string][]byte{"mx1": []byte(`{"hostname":"mx1.example.org"}`)},
		Options: apply.Options{Progress: &out},
	}
	p := applyPlan()
	res, err := eng.Apply(context.Background(), p)
	if err != nil {
		t.Fatalf("Apply: %v\n%s", err, out.String())
	}
	// Server (1) and user (1) created, DKIM TXT and MX created, A
	// replaced (1 added, 1 destroyed), PTR created.
	if res.Added != 6 || res.Changed != 0 || res.Destroyed != 1 || len(res.NotApplied) != 0 || len(res.Deferred) != 0 {
		t.Errorf("Result = %+v, want 6 added, 1 destroyed", res)
	}
	if len(res.DKIMKeys) != 1 || string(srv.config) != `{"hostname":"mx1.example.org"}` {
		t.Errorf("keys read back %v, config deployed %q", res.DKIMKeys, srv.config)
	}
	calls := j.String()
	order := []string{"deploy mx1", "state mx1", "dns mx1-ed25519._domainkey TXT v=DKIM1; k=ed25519; p=KEY", "ptr 192.0.2.1 mx1.example.org."}
	last := -1
	for _, c := range order {
		i := strings.Index(calls, c)
		if i < 0 || i < last {
			t.Fatalf("calls out of order, want %q in order; got:\n%s", order, calls)
		}
		last = i
	}
	if !strings.Contains(out.String(), "server.mx1: deployed release 1.0-abc (install release 1.0-abc)") {
		t.Errorf("progress:\n%s", out.String())
	}
}

// TestEngineApplyStopsAtDeploy: a failed deployment leaves DNS and PTR
// undone, and says so.
func TestEngineApplyStopsAtDeploy(t *testing.T) {
	t.Parallel()
	j := &journal{}
	boom := errors.New("health check failed")
	eng := &apply.Engine{
		DNS: map[string]dns.Provider{prov: journalDNS{dnsmem.New("example.org"), j}}, PTR: map[string]ptr.Provider{"provider.ptr.test": journalPTR{j}},
		Servers: map[string]apply.Server{"mx1": &fakeServer{name: "mx1", j: j, fail: boom}},
	}
	res, err := eng.Apply(context.Background(), applyPlan())
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "deploy server.mx1") {
		t.Errorf("Apply = %v, want the deployment's error", err)
	}
	want := "dns.example.org.mx1-ed25519._domainkey.TXT dns.example.org.@.MX dns.example.org.mail.A ptr.192.0.2.1" // plan order
	if got := strings.Join(res.NotApplied, " "); got != want {
		t.Errorf("NotApplied = %s, want %s", got, want)
	}
	if calls := j.String(); calls != "deploy mx1" {
		t.Errorf("calls after a failed deploy:\n%s", calls)
	}
}

func TestEngineDestroy(t *testing.T) {
	t.Parallel()
	j := &journal{}
	mem := dnsmem.New("example.org")
	mem.Seed("example.org", libdns.RR{Name: "@", Type: "MX", Data: "10 mx1.example.org.", TTL: 300})
	srv := &fakeServer{name: "mx1", j: j}
	eng := &apply.Engine{
		DNS: map[string]dns.Provider{prov: journalDNS{mem, j}}, PTR: map[string]ptr.Provider{"provider.ptr.test": journalPTR{j}},
		Servers: map[string]apply.Server{"mx1": srv},
	}
	p := &plan.Plan{Changes: []plan.Change{
		{Address: "dns.example.org.@.MX", Type: plan.KindDNSRRset, Action: plan.Delete, Provider: prov, Zone: "example.org",
			Name: "@", RRType: "MX", Before: rrset("10 mx1.example.org.")},
		{Address: "ptr.192.0.2.1", Type: plan.KindPTR, Action: plan.Delete, Provider: "provider.ptr.test", Name: "192.0.2.1",
			Before: &plan.RRSet{Values: []string{"mx1.example.org."}}},
		{Address: "server.mx1", Type: plan.KindServer, Action: plan.Delete},
	}}
	res, err := eng.Destroy(context.Background(), p, true)
	if err != nil || res.Destroyed != 3 || res.Added+res.Changed != 0 {
		t.Fatalf("Destroy = %+v, %v; want 3 destroyed", res, err)
	}
	if !srv.destroy || !srv.purged {
		t.Error("the server was not destroyed with its data")
	}
	if calls := j.String(); !strings.HasSuffix(calls, "ptr 192.0.2.1 \ndestroy mx1") {
		t.Errorf("calls:\n%s", calls)
	}
	if rrs, _ := mem.Records(context.Background(), "example.org"); len(rrs) != 0 {
		t.Errorf("records left: %v", rrs)
	}
}
