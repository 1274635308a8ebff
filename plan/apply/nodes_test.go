package apply_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/apply"
	"github.com/mailctl/mailctl/plan/target"
	"github.com/mailctl/mailctl/providers/dns"
	"github.com/mailctl/mailctl/providers/dns/dnsmem"
	"github.com/mailctl/mailctl/remote"
)

// nodeServer is a fakeServer that is also a node: its store URL file,
// its schema migrations and its DKIM key files.
type nodeServer struct {
	fakeServer
	url        string
	migrateErr error
	dkim       map[string]map[string][]byte // domain -> file -> content
	reloads    int
}

func (s *nodeServer) WriteStoreURL(_ context.Context, url string) (bool, error) {
	s.j.add("url " + s.name)
	changed := s.url != url
	s.url = url
	return changed, nil
}
func (s *nodeServer) MigrateStore(context.Context, target.Binary) (string, error) {
	s.j.add("migrate " + s.name)
	if s.migrateErr != nil {
		return "", s.migrateErr
	}
	return "store schema 0 -> 1", nil
}
func (s *nodeServer) DKIMFiles(_ context.Context, domain string) (map[string][]byte, error) {
	return maps.Clone(s.dkim[domain]), nil
}
func (s *nodeServer) SyncDKIMFiles(_ context.Context, domain string, files map[string][]byte) (bool, error) {
	if maps.EqualFunc(s.dkim[domain], files, func(a, b []byte) bool { return string(a) == string(b) }) {
		return false, nil
	}
	s.j.add("copy dkim " + domain + " to " + s.name)
	if s.dkim == nil {
		s.dkim = map[string]map[string][]byte{}
	}
	s.dkim[domain] = maps.Clone(files)
	return true, nil
}
func (s *nodeServer) Reload(context.Context) error {
	s.j.add("reload " + s.name)
	s.reloads++
	return nil
}

// Deploy of a node generates the domain's keys when it has none, as the
// server does on its first start.
func (s *nodeServer) Deploy(ctx context.Context, b target.Binary, cfg []byte, restart []string) (remote.DeployResult, error) {
	res, err := s.fakeServer.Deploy(ctx, b, cfg, restart)
	if err == nil && s.dkim["example.org"] == nil {
		s.dkim = map[string]map[string][]byte{"example.org": {"mailctl-ed25519.pem": []byte("key of " + s.name)}}
	}
	return res, err
}

const storeURL = "postgres://mailctl:pw@db/mail"

// nodesEngine is three servers a, b, c of one store and domain, a first.
func nodesEngine(j *journal) (*apply.Engine, map[string]*nodeServer) {
	nodes := map[string]*nodeServer{}
	servers := map[string]apply.Server{}
	for _, n := range []string{"c", "b", "a"} {
		nodes[n] = &nodeServer{fakeServer: fakeServer{name: n, j: j}}
		servers[n] = nodes[n]
	}
	return &apply.Engine{
		DNS:     map[string]dns.Provider{prov: journalDNS{dnsmem.New("example.org"), j}},
		Servers: servers,
		Nodes: apply.Nodes{
			StoreURL: map[string]string{"a": storeURL, "b": storeURL, "c": storeURL},
			DKIMFrom: map[string]map[string]string{"b": {"example.org": "a"}, "c": {"example.org": "a"}},
		},
	}, nodes
}

func nodesPlan() *plan.Plan {
	return &plan.Plan{Changes: []plan.Change{
		{Address: "server.a", Type: plan.KindServer, Action: plan.Create},
		{Address: "server.b", Type: plan.KindServer, Action: plan.Create},
		{Address: "server.c", Type: plan.KindServer, Action: plan.Create},
		{Address: "dns.example.org.@.MX", Type: plan.KindDNSRRset, Action: plan.Create, Provider: prov, Zone: "example.org",
			Domain: "example.org", Name: "@", RRType: "MX", After: rrset("10 a.example.org.", "10 b.example.org.", "10 c.example.org.")},
	}}
}

// TestEngineNodes: apply writes each node's store URL, migrates the store
// once, before the first server starts, deploys the first server of the
// domain first and copies its DKIM keys to the others, which then hold
// the same keys.
func TestEngineNodes(t *testing.T) {
	t.Parallel()
	j := &journal{}
	eng, nodes := nodesEngine(j)
	nodes["b"].dkim = map[string]map[string][]byte{"example.org": {"mailctl-ed25519.pem": []byte("own key of b"), "stale.pem": []byte("x")}}
	if _, err := eng.Apply(context.Background(), nodesPlan()); err != nil {
		t.Fatalf("Apply: %v\n%s", err, j)
	}
	calls := j.String()
	if strings.Count(calls, "migrate ") != 1 {
		t.Errorf("migrations: want one for the store\n%s", calls)
	}
	order := []string{"url a", "migrate a", "deploy a", "url b", "copy dkim example.org to b", "deploy b", "url c", "copy dkim example.org to c", "deploy c", "dns "}
	last := -1
	for _, c := range order {
		i := strings.Index(calls, c)
		if i < 0 || i < last {
			t.Fatalf("calls out of order, want %q in order; got:\n%s", order, calls)
		}
		last = i
	}
	for _, n := range []string{"b", "c"} {
		if got := nodes[n].dkim["example.org"]; len(got) != 1 || string(got["mailctl-ed25519.pem"]) != "key of a" {
			t.Errorf("DKIM files of %s = %q, want a's only", n, got)
		}
		if nodes[n].url != storeURL {
			t.Errorf("store URL of %s = %q", n, nodes[n].url)
		}
	}
}

// TestEngineNodeFails: a node that fails to deploy is reported with its
// name, the other nodes are still deployed, every failure is returned,
// and DNS waits.
func TestEngineNodeFails(t *testing.T) {
	t.Parallel()
	j := &journal{}
	eng, nodes := nodesEngine(j)
	nodes["b"].fail = errors.New("health check failed")
	nodes["c"].fail = errors.New("disk full")
	res, err := eng.Apply(context.Background(), nodesPlan())
	if err == nil || !strings.Contains(err.Error(), "deploy server.b: health check failed") || !strings.Contains(err.Error(), "deploy server.c: disk full") {
		t.Fatalf("Apply = %v, want both failures with their servers", err)
	}
	calls := j.String()
	if !strings.Contains(calls, "deploy a") || !strings.Contains(calls, "deploy c") || strings.Contains(calls, "dns ") {
		t.Errorf("calls:\n%s\nwant every node deployed, no DNS change", calls)
	}
	if got := strings.Join(res.NotApplied, " "); got != "dns.example.org.@.MX" {
		t.Errorf("NotApplied = %q", got)
	}
}

// TestEngineStoreTooNew: a store at a newer schema than the binary stops
// the apply before any server is deployed, with the migration's error.
func TestEngineStoreTooNew(t *testing.T) {
	t.Parallel()
	j := &journal{}
	eng, nodes := nodesEngine(j)
	tooNew := errors.New("server.a: pgstore: database schema is newer than this mailctl: the database is at schema 3, this mailctl knows up to 1; upgrade mailctl")
	nodes["a"].migrateErr = tooNew
	_, err := eng.Apply(context.Background(), nodesPlan())
	if !errors.Is(err, tooNew) || err.Error() != tooNew.Error() {
		t.Fatalf("Apply = %v, want the migration's error alone", err)
	}
	if calls := j.String(); strings.Contains(calls, "deploy ") || strings.Contains(calls, "dns ") {
		t.Errorf("calls after a refused migration:\n%s", calls)
	}
}

// rotatingNode is a node whose DKIM rotate step generates a key file, as
// the server does.
type rotatingNode struct{ *nodeServer }

func (s rotatingNode) DKIM(ctx context.Context, action, domain, selector string) error {
	if action == plan.DKIMRotate {
		s.dkim[domain][selector+"-ed25519.pem"] = []byte("new key of " + s.name)
	}
	return s.nodeServer.DKIM(ctx, action, domain, selector)
}

// TestEngineNodesRotation: a rotation runs on the domain's first server;
// apply then copies the new key to the other servers and reloads them.
func TestEngineNodesRotation(t *testing.T) {
	t.Parallel()
	j := &journal{}
	eng, nodes := nodesEngine(j)
	for _, n := range []string{"a", "b", "c"} {
		nodes[n].dkim = map[string]map[string][]byte{"example.org": {"mailctl-ed25519.pem": []byte("key of a")}}
	}
	eng.Servers["a"] = rotatingNode{nodes["a"]}
	p := &plan.Plan{Changes: []plan.Change{{Address: "dkim.example.org", Type: plan.KindDKIM, Action: plan.Update, Domain: "example.org",
		Source: "server.a", DKIM: []plan.DKIMStep{{Action: plan.DKIMRotate, Selector: "mailctl-20261207"}}}}}
	if _, err := eng.Apply(context.Background(), p); err != nil {
		t.Fatalf("Apply: %v\n%s", err, j)
	}
	for _, n := range []string{"b", "c"} {
		if got := string(nodes[n].dkim["example.org"]["mailctl-20261207-ed25519.pem"]); got != "new key of a" || nodes[n].reloads != 1 {
			t.Errorf("%s after the rotation: new key %q, %d reloads; want a's, 1\n%s", n, got, nodes[n].reloads, j)
		}
	}
	if nodes["a"].reloads != 0 {
		t.Errorf("the first server was reloaded %d times", nodes["a"].reloads)
	}
}

// TestEngineNodesAdopt: a server put at the head of a domain's servers,
// new and without keys, takes the keys the others already sign with and
// publish, instead of making new ones.
func TestEngineNodesAdopt(t *testing.T) {
	t.Parallel()
	j := &journal{}
	eng, nodes := nodesEngine(j)
	eng.Nodes.DKIMPeers = map[string]map[string][]string{"a": {"example.org": {"b", "c"}}}
	for _, n := range []string{"b", "c"} {
		nodes[n].dkim = map[string]map[string][]byte{"example.org": {"mailctl-ed25519.pem": []byte("published key")}}
	}
	p := &plan.Plan{Changes: []plan.Change{{Address: "server.a", Type: plan.KindServer, Action: plan.Create}}}
	if _, err := eng.Apply(context.Background(), p); err != nil {
		t.Fatalf("Apply: %v\n%s", err, j)
	}
	for _, n := range []string{"a", "b", "c"} {
		if got := string(nodes[n].dkim["example.org"]["mailctl-ed25519.pem"]); got != "published key" {
			t.Errorf("key of %s = %q, want the published one\n%s", n, got, j)
		}
	}
	if !strings.Contains(j.String(), "copy dkim example.org to a") {
		t.Errorf("calls:\n%s", j)
	}
}
