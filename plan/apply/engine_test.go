package apply_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

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
	extra   []desired.DKIMKey // more keys State reports
	fail    error
	dkimErr error  // what DKIM returns for the action refused
	refuse  string // the DKIM action refused
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
	return &plan.ServerState{Running: true}, append([]desired.DKIMKey{s.key}, s.extra...), nil
}
func (s *fakeServer) DKIM(_ context.Context, action, domain, selector string) error {
	s.j.add("dkim " + action + " " + domain + " " + selector)
	if action == s.refuse {
		return s.dkimErr
	}
	return nil
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

// rotationPlan rotates example.org's DKIM key from mx1 to mx1-20261207 in
// one apply, removes the retired mx1-20250101 (its record deleted), and
// sets a PTR. The DNS provider is a zone file's: nothing serves it, so
// the propagation wait has nothing to wait for.
func rotationPlan() *plan.Plan {
	const zprov = "provider.zonefile.test"
	txt := func(sel string) plan.Change {
		return plan.Change{Address: "dns.example.org." + sel + "._domainkey.TXT", Type: plan.KindDNSRRset, Action: plan.Create, Provider: zprov,
			Zone: "example.org", Domain: "example.org", Name: sel + "._domainkey", RRType: "TXT", After: rrset(), AfterUnknown: true}
	}
	return &plan.Plan{Changes: []plan.Change{
		txt("mx1-20261207-ed25519"),
		txt("mx1-20261207-rsa"),
		{Address: "dns.example.org.mx1-20250101-ed25519._domainkey.TXT", Type: plan.KindDNSRRset, Action: plan.Delete, Provider: zprov,
			Zone: "example.org", Domain: "example.org", Name: "mx1-20250101-ed25519._domainkey", RRType: "TXT", Before: rrset("v=DKIM1; k=ed25519; p=OLD")},
		{Address: "dkim.example.org", Type: plan.KindDKIM, Action: plan.Update, Domain: "example.org", Source: "server.mx1", DKIM: []plan.DKIMStep{
			{Action: plan.DKIMRotate, Selector: "mx1-20261207"},
			{Action: plan.DKIMActivate, Selector: "mx1-20261207", From: "mx1"},
			{Action: plan.DKIMRemove, Selector: "mx1-20250101"},
		}},
		{Address: "ptr.192.0.2.1", Type: plan.KindPTR, Action: plan.Create, Provider: "provider.ptr.test", Name: "192.0.2.1",
			After: &plan.RRSet{Values: []string{"mx1.example.org."}}},
	}}
}

// TestEngineApplyDKIMRotation: the engine generates the new keys before
// reading the servers' keys back, publishes them, switches signing only
// after the propagation wait, removes the retired selector after its
// record is deleted, and counts the rotation as changed.
func TestEngineApplyDKIMRotation(t *testing.T) {
	t.Parallel()
	j := &journal{}
	mem := dnsmem.New("example.org")
	mem.Seed("example.org", libdns.RR{Name: "mx1-20250101-ed25519._domainkey", Type: "TXT", Data: "v=DKIM1; k=ed25519; p=OLD", TTL: 300})
	srv := &fakeServer{name: "mx1", j: j,
		key:   desired.DKIMKey{Domain: "example.org", Selector: "mx1-20261207-ed25519", Record: "v=DKIM1; k=ed25519; p=NEW", State: "pending"},
		extra: []desired.DKIMKey{{Domain: "example.org", Selector: "mx1-20261207-rsa", Record: "v=DKIM1; k=rsa; p=NEWRSA", State: "pending"}}}
	var out strings.Builder
	eng := &apply.Engine{
		DNS: map[string]dns.Provider{"provider.zonefile.test": journalDNS{mem, j}}, PTR: map[string]ptr.Provider{"provider.ptr.test": journalPTR{j}},
		Servers: map[string]apply.Server{"mx1": srv}, Wait: time.Minute, Options: apply.Options{Progress: &out},
	}
	res, err := eng.Apply(context.Background(), rotationPlan())
	if err != nil {
		t.Fatalf("Apply: %v\n%s", err, out.String())
	}
	// Two TXT and the PTR added, the old TXT destroyed, the rotation changed.
	if res.Added != 3 || res.Changed != 1 || res.Destroyed != 1 || len(res.NotApplied) != 0 {
		t.Errorf("Result = %+v, want 3 added, 1 changed, 1 destroyed", res)
	}
	calls := j.String()
	order := []string{"dkim rotate example.org mx1-20261207", "state mx1", "p=NEW", "dkim activate example.org mx1-20261207",
		"dkim remove example.org mx1-20250101", "ptr 192.0.2.1 mx1.example.org."}
	last := -1
	for _, c := range order {
		i := strings.Index(calls, c)
		if i < 0 || i < last {
			t.Fatalf("calls out of order, want %q in order; got:\n%s", order, calls)
		}
		last = i
	}
	if !strings.Contains(calls, "-mx1-20250101-ed25519._domainkey TXT") {
		t.Errorf("the retired selector's record was not deleted:\n%s", calls)
	}
	if !strings.Contains(out.String(), "dkim.example.org: signing switched from mx1 to mx1-20261207") {
		t.Errorf("progress:\n%s", out.String())
	}
}

// TestEngineApplyDKIMStops: without the propagation wait signing stays on
// the old key; a refused step stops the apply before reverse DNS, and
// both the rotation and the PTR are listed as not applied.
func TestEngineApplyDKIMStops(t *testing.T) {
	t.Parallel()
	newEngine := func(j *journal, wait time.Duration, dkimErr error, out *strings.Builder) *apply.Engine {
		srv := &fakeServer{name: "mx1", j: j, dkimErr: dkimErr, refuse: plan.DKIMActivate,
			key:   desired.DKIMKey{Domain: "example.org", Selector: "mx1-20261207-ed25519", Record: "v=DKIM1; k=ed25519; p=NEW"},
			extra: []desired.DKIMKey{{Domain: "example.org", Selector: "mx1-20261207-rsa", Record: "v=DKIM1; k=rsa; p=NEWRSA"}}}
		return &apply.Engine{
			DNS: map[string]dns.Provider{"provider.zonefile.test": journalDNS{dnsmem.New("example.org"), j}}, PTR: map[string]ptr.Provider{"provider.ptr.test": journalPTR{j}},
			Servers: map[string]apply.Server{"mx1": srv}, Wait: wait, Options: apply.Options{Progress: out},
		}
	}
	t.Run("no wait", func(t *testing.T) {
		j, out := &journal{}, &strings.Builder{}
		p := rotationPlan()
		p.Changes[3].DKIM = p.Changes[3].DKIM[:2]
		if _, err := newEngine(j, 0, nil, out).Apply(context.Background(), p); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if calls := j.String(); strings.Contains(calls, "dkim activate") {
			t.Errorf("signing switched without the wait:\n%s", calls)
		}
		if !strings.Contains(out.String(), "signing stays on mx1") {
			t.Errorf("progress:\n%s", out.String())
		}
	})
	t.Run("refused", func(t *testing.T) {
		j, out := &journal{}, &strings.Builder{}
		p := rotationPlan()
		res, err := newEngine(j, time.Minute, errors.New("selector mx1-20261207 is retired, not pending"), out).Apply(context.Background(), p)
		if err == nil || !strings.Contains(err.Error(), "dkim.example.org: switch signing to mx1-20261207: selector mx1-20261207 is retired") {
			t.Fatalf("Apply = %v, want the refused step", err)
		}
		if got := strings.Join(res.NotApplied, " "); got != "dkim.example.org ptr.192.0.2.1" {
			t.Errorf("NotApplied = %s", got)
		}
		if calls := j.String(); strings.Contains(calls, "ptr ") || strings.Contains(calls, "dkim remove") {
			t.Errorf("reverse DNS set after a failed step:\n%s", calls)
		}
	})
}
