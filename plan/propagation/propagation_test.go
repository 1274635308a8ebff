package propagation_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/apply"
	"github.com/mailctl/mailctl/plan/propagation"
	"github.com/mailctl/mailctl/plan/verify"
	"github.com/mailctl/mailctl/providers/dns"
	"github.com/mailctl/mailctl/providers/dns/rfc2136"
)

const provName = "provider.rfc2136.knot"

// pair is a Knot primary with a secondary that transfers the zone only
// when the test refreshes it.
type pair struct {
	primary, secondary *testenv.Knot
	prov               dns.Provider
}

func startPair(t *testing.T) *pair {
	t.Helper()
	p := testenv.StartKnot(t, "example.org")
	s := testenv.StartKnotSecondary(t, p, "example.org")
	prov, err := rfc2136.New(p.Addr, p.TSIGName, p.TSIGAlg, p.TSIGSecret, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &pair{primary: p, secondary: s, prov: prov}
}

// apply applies changes to the primary the way mailctl apply does.
func (p *pair) apply(t *testing.T, changes ...plan.Change) {
	t.Helper()
	if _, err := apply.DNS(context.Background(), &plan.Plan{Changes: changes}, map[string]dns.Provider{provName: p.prov}, apply.Options{}); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

// options finds the zone's NS through the primary (which answers for it)
// and dials both servers at their loopback ports.
func (p *pair) options(progress *lines) propagation.Options {
	return propagation.Options{
		Resolver: &verify.DNSClient{Servers: []string{p.primary.Addr}},
		Addresses: map[string]string{
			"ns1.example.org:53": p.primary.Addr,
			"ns2.example.org:53": p.secondary.Addr,
		},
		Timeout:      30 * time.Second,
		MinInterval:  10 * time.Millisecond,
		MaxInterval:  40 * time.Millisecond,
		QueryTimeout: 2 * time.Second,
		Progress:     progress,
	}
}

// lines is a progress writer that tells when something was written.
type lines struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
	wrote  chan struct{}
}

func newLines() *lines { return &lines{wrote: make(chan struct{}, 1)} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	select {
	case l.wrote <- struct{}{}:
	default:
	}
	return l.b.Write(p)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lines) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writes
}

// waitFor returns once the output has n writes, failing after 20s.
func (l *lines) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for l.count() < n {
		select {
		case <-l.wrote:
		case <-deadline:
			t.Fatalf("no progress after 20s, output:\n%s", l)
		}
	}
}

func set(ttl int, values ...string) *plan.RRSet { return &plan.RRSet{TTL: ttl, Values: values} }

func change(name, typ string, action plan.Action, before, after *plan.RRSet) plan.Change {
	return plan.Change{
		Address: "dns.example.org." + name + "." + typ, Type: "dns_rrset", Action: action, Domain: "example.org",
		Provider: provName, Zone: "example.org", Name: name, RRType: typ, Before: before, After: after,
	}
}

// TestWaitForLaggingSecondary: Wait keeps waiting, and says which server
// lags and how, while the secondary serves the old zone; it returns once
// the secondary transferred the new one.
func TestWaitForLaggingSecondary(t *testing.T) {
	t.Parallel()
	p := startPair(t)
	oldSerial := p.secondary.Serial(t, "example.org")
	changes := []plan.Change{
		change("@", "MX", plan.Create, nil, set(300, "10 mx1.example.org.")),
		change("_dmarc", "TXT", plan.Create, nil, set(3600, "v=DMARC1; p=none")),
		change("mx1", "A", plan.Create, nil, set(300, "192.0.2.10")),
	}
	p.apply(t, changes...)
	newSerial := p.primary.Serial(t, "example.org")

	out := newLines()
	opts := p.options(out)
	opts.Terminal = true // a line per poll: the test counts polls
	type outcome struct {
		res propagation.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := propagation.Wait(context.Background(), changes, opts)
		done <- outcome{res, err}
	}()

	out.waitFor(t, 5) // five polls, the secondary still lags
	select {
	case o := <-done:
		t.Fatalf("Wait returned while the secondary lags: %+v, %v\n%s", o.res, o.err, out)
	default:
	}
	text := out.String()
	last := text[strings.LastIndex(text, "\r\033[K"):]
	for _, want := range []string{
		"Waiting for DNS propagation: 1/2 name servers serve the new records",
		"ns2.example.org: serial " + itoa(oldSerial) + " < " + itoa(newSerial),
		"_dmarc.example.org TXT missing", "example.org MX missing", "1 more",
		"elapsed]",
	} {
		if !strings.Contains(last, want) {
			t.Errorf("progress %q lacks %q", last, want)
		}
	}
	if strings.Contains(last, "ns1.example.org") {
		t.Errorf("progress %q names the primary, which is up to date", last)
	}

	p.secondary.Refresh(t, "example.org")
	var o outcome
	select {
	case o = <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("Wait did not return after the refresh:\n%s", out)
	}
	if o.err != nil {
		t.Fatalf("Wait = %v", o.err)
	}
	if len(o.res.Servers) != 2 {
		t.Fatalf("Result.Servers = %+v, want ns1 and ns2", o.res.Servers)
	}
	for i, name := range []string{"ns1.example.org", "ns2.example.org"} {
		s := o.res.Servers[i]
		if s.Name != name || !s.Current || s.Serial != newSerial || len(s.Problems) > 0 {
			t.Errorf("Servers[%d] = %+v, want %s current at serial %d", i, s, name, newSerial)
		}
	}
	if o.res.Polls < 5 {
		t.Errorf("Polls = %d, want at least 5", o.res.Polls)
	}
	if !strings.Contains(out.String(), "\r\033[KDNS propagation complete: 2/2 name servers serve the new records [") {
		t.Errorf("no completion line in %q", out)
	}
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// TestWaitCompares: for each kind of change, the secondary that has not
// transferred the zone is reported lagging with the right reason until
// the bound, and served as planned after a refresh.
func TestWaitCompares(t *testing.T) {
	t.Parallel()
	spf := "v=spf1 mx -all"
	verif := "google-site-verification=abc123"
	tests := []struct {
		name    string
		seed    []plan.Change // applied and transferred first
		behind  []plan.Change // then applied, not transferred
		changes []plan.Change
		lag     string
	}{
		{
			name:    "create",
			changes: []plan.Change{change("@", "MX", plan.Create, nil, set(300, "10 mx1.example.org."))},
			lag:     "example.org MX missing",
		},
		{
			name:    "replace",
			seed:    []plan.Change{change("@", "MX", plan.Create, nil, set(300, "1 aspmx.l.google.com."))},
			changes: []plan.Change{change("@", "MX", plan.Replace, set(300, "1 aspmx.l.google.com."), set(300, "10 mx1.example.org."))},
			lag:     "example.org MX old",
		},
		{
			name: "update",
			seed: []plan.Change{change("_submissions._tcp", "SRV", plan.Create, nil, set(3600, "0 1 465 mx1.example.org."))},
			changes: []plan.Change{change("_submissions._tcp", "SRV", plan.Update, set(3600, "0 1 465 mx1.example.org."),
				set(3600, "0 1 465 mx1.example.org.", "10 1 465 mx2.example.org."))},
			lag: "_submissions._tcp.example.org SRV old",
		},
		{
			name:    "two versions behind",
			seed:    []plan.Change{change("@", "MX", plan.Create, nil, set(300, "1 aspmx.l.google.com."))},
			behind:  []plan.Change{change("@", "MX", plan.Replace, set(300, "1 aspmx.l.google.com."), set(300, "5 mx0.example.org."))},
			changes: []plan.Change{change("@", "MX", plan.Replace, set(300, "5 mx0.example.org."), set(300, "10 mx1.example.org."))},
			lag:     "example.org MX differs",
		},
		{
			name:    "delete",
			seed:    []plan.Change{change("autoconfig", "CNAME", plan.Create, nil, set(3600, "mx1.example.org."))},
			changes: []plan.Change{change("autoconfig", "CNAME", plan.Delete, set(3600, "mx1.example.org."), nil)},
			lag:     "autoconfig.example.org CNAME not deleted",
		},
		{
			name: "TTL only",
			seed: []plan.Change{change("mx1", "A", plan.Create, nil, set(3600, "192.0.2.10"))},
			// A TTL change rewrites the whole set (plan.DNSEdits).
			changes: []plan.Change{change("mx1", "A", plan.Update, set(3600, "192.0.2.10"), set(300, "192.0.2.10"))},
			lag:     "mx1.example.org A TTL 3600, want 300",
		},
		{
			// Only the SPF record is mailctl's: another TXT at the apex
			// neither hides the change nor blocks the wait.
			name: "SPF beside a foreign TXT",
			seed: []plan.Change{change("@", "TXT", plan.Create, nil, set(3600, verif, spf))},
			changes: []plan.Change{change("@", "TXT", plan.Update, set(3600, verif, spf),
				set(3600, verif, "v=spf1 mx include:amazonses.com -all"))},
			lag: "example.org TXT old",
		},
		{
			name:    "SPF deleted beside a foreign TXT",
			seed:    []plan.Change{change("@", "TXT", plan.Create, nil, set(3600, verif, spf))},
			changes: []plan.Change{change("@", "TXT", plan.Delete, set(3600, spf), nil)},
			lag:     "example.org TXT not deleted",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startPair(t)
			if len(tt.seed) > 0 {
				p.apply(t, tt.seed...)
				p.secondary.Refresh(t, "example.org")
			}
			if len(tt.behind) > 0 {
				p.apply(t, tt.behind...)
			}
			p.apply(t, tt.changes...)

			opts := p.options(newLines())
			opts.Timeout = 1500 * time.Millisecond
			res, err := propagation.Wait(context.Background(), tt.changes, opts)
			if !errors.Is(err, propagation.ErrTimeout) {
				t.Fatalf("Wait while the secondary lags = %v, want ErrTimeout", err)
			}
			if !strings.Contains(err.Error(), "ns2.example.org (zone example.org): serial ") || !strings.Contains(err.Error(), tt.lag) {
				t.Errorf("Wait error = %q, want ns2.example.org lagging with %q", err, tt.lag)
			}
			if strings.Contains(err.Error(), "ns1.example.org") {
				t.Errorf("Wait error = %q names the primary", err)
			}
			if len(res.Servers) != 2 || !res.Servers[0].Current || res.Servers[1].Current {
				t.Errorf("Result.Servers = %+v, want ns1 current, ns2 not", res.Servers)
			}

			p.secondary.Refresh(t, "example.org")
			opts.Timeout = 20 * time.Second
			if _, err := propagation.Wait(context.Background(), tt.changes, opts); err != nil {
				t.Errorf("Wait after the refresh = %v", err)
			}
		})
	}
}

// TestTimeoutError: the error names the lagging server and the fix, and
// the progress printed a line only when the state changed.
func TestTimeoutError(t *testing.T) {
	t.Parallel()
	p := startPair(t)
	changes := []plan.Change{change("_dmarc", "TXT", plan.Create, nil, set(3600, "v=DMARC1; p=none"))}
	p.apply(t, changes...)
	out := newLines()
	opts := p.options(out)
	opts.Timeout = 1500 * time.Millisecond
	start := time.Now()
	_, err := propagation.Wait(context.Background(), changes, opts)
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("Wait with a 1.5s bound took %v", took)
	}
	if !errors.Is(err, propagation.ErrTimeout) {
		t.Fatalf("Wait = %v, want ErrTimeout", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"DNS propagation not complete after 1.5s: 1/2 name servers serve the new records\n",
		"\nns2.example.org (zone example.org): serial ",
		"_dmarc.example.org TXT missing\n",
		"fix: check that the secondary name servers transfer the zone from the primary (NOTIFY sent to them, AXFR/IXFR allowed)",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	// Several polls, one state: one line.
	if n := strings.Count(out.String(), "\n"); n != 1 || !strings.HasPrefix(out.String(), "Waiting for DNS propagation: 1/2") {
		t.Errorf("progress on a non-terminal = %q, want one line", out)
	}
}

// TestSerialBehindButCurrent: a server that serves the changed records is
// current even when its serial is behind (a later, unrelated update at the
// primary): the records decide.
func TestSerialBehindButCurrent(t *testing.T) {
	t.Parallel()
	p := startPair(t)
	changes := []plan.Change{change("@", "MX", plan.Create, nil, set(300, "10 mx1.example.org."))}
	p.apply(t, changes...)
	p.secondary.Refresh(t, "example.org")
	p.apply(t, change("www", "A", plan.Create, nil, set(300, "192.0.2.80")))
	if a, b := p.secondary.Serial(t, "example.org"), p.primary.Serial(t, "example.org"); a == b {
		t.Fatalf("secondary serial %d = primary serial: the test needs it behind", a)
	}
	res, err := propagation.Wait(context.Background(), changes, p.options(newLines()))
	if err != nil {
		t.Fatalf("Wait = %v", err)
	}
	if res.Servers[1].Serial != p.secondary.Serial(t, "example.org") {
		t.Errorf("Servers[1].Serial = %d, want the secondary's", res.Servers[1].Serial)
	}
}

// TestCancel: Wait returns soon after its context ends, with its error.
func TestCancel(t *testing.T) {
	t.Parallel()
	p := startPair(t)
	changes := []plan.Change{change("@", "MX", plan.Create, nil, set(300, "10 mx1.example.org."))}
	p.apply(t, changes...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := newLines()
	opts := p.options(out)
	opts.Timeout = time.Minute
	done := make(chan error, 1)
	go func() {
		_, err := propagation.Wait(ctx, changes, opts)
		done <- err
	}()
	out.waitFor(t, 1)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || errors.Is(err, propagation.ErrTimeout) {
			t.Errorf("Wait after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return within 5s of the cancel")
	}
}

// TestNameServersNotFound: a zone whose NS cannot be found, or whose
// server does not answer, fails at the bound with the zone and the fix.
func TestNameServersNotFound(t *testing.T) {
	t.Parallel()
	k := testenv.StartKnot(t, "example.org")
	// A port nothing listens on.
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.LocalAddr().String()
	l.Close()
	mx := func(zone string) []plan.Change {
		c := change("@", "MX", plan.Create, nil, set(300, "10 mx1.example.org."))
		c.Zone = zone
		return []plan.Change{c}
	}
	tests := []struct {
		name    string
		changes []plan.Change
		opts    propagation.Options
		want    []string
	}{
		{
			name:    "zone not served",
			changes: mx("example.net"),
			opts:    propagation.Options{Resolver: &verify.DNSClient{Servers: []string{k.Addr}}},
			want:    []string{"zone example.net: look up NS of example.net: ", "REFUSED", "fix: check that the zone is delegated"},
		},
		{
			name:    "server down",
			changes: mx("example.org"),
			opts: propagation.Options{Nameservers: func(ctx context.Context, zone string) ([]verify.NameServer, error) {
				return []verify.NameServer{{Name: "ns9.example.org", Addr: dead}}, nil
			}},
			want: []string{"0/1 name servers", "ns9.example.org (zone example.org): no answer: ", "fix: check that the zone is delegated"},
		},
		{
			name:    "name server at its A address, not serving",
			changes: mx("example.org"),
			opts: propagation.Options{Resolver: &verify.DNSClient{Servers: []string{k.Addr}},
				Addresses: map[string]string{}},
			// ns1.example.org has A 127.0.0.1: port 53, where no Knot of
			// this test listens; either way it does not serve the zone.
			want: []string{"ns1.example.org (zone example.org): "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.opts.Timeout = 1500 * time.Millisecond
			tt.opts.MinInterval = 20 * time.Millisecond
			tt.opts.QueryTimeout = time.Second
			_, err := propagation.Wait(context.Background(), tt.changes, tt.opts)
			if !errors.Is(err, propagation.ErrTimeout) {
				t.Fatalf("Wait = %v, want ErrTimeout", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestNothingToWaitFor: no-ops, other resources and values unknown until
// the server is deployed are not waited for.
func TestNothingToWaitFor(t *testing.T) {
	t.Parallel()
	dkim := change("mx1-ed25519._domainkey", "TXT", plan.Create, nil, &plan.RRSet{TTL: 3600})
	dkim.AfterUnknown = true
	noop := change("@", "MX", plan.NoOp, set(300, "10 mx1.example.org."), set(300, "10 mx1.example.org."))
	srv := plan.Change{Address: "server.mx1", Type: "server", Action: plan.Create}
	called := false
	opts := propagation.Options{Nameservers: func(ctx context.Context, zone string) ([]verify.NameServer, error) {
		called = true
		return nil, errors.New("no")
	}, Timeout: time.Second}
	res, err := propagation.Wait(context.Background(), []plan.Change{dkim, noop, srv}, opts)
	if err != nil || called || len(res.Servers) != 0 || res.Polls != 0 {
		t.Errorf("Wait = %+v, %v (name servers looked up: %v), want nothing done", res, err, called)
	}
}

// TestCancelDuringQuery: a cancel interrupts a query in flight (to a
// server that never answers) and Wait leaves no goroutine behind. Not
// parallel: no other Wait runs meanwhile.
func TestCancelDuringQuery(t *testing.T) {
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	changes := []plan.Change{change("@", "MX", plan.Create, nil, set(300, "10 mx1.example.org."))}
	opts := propagation.Options{
		Nameservers: func(ctx context.Context, zone string) ([]verify.NameServer, error) {
			return []verify.NameServer{{Name: "ns1.example.org", Addr: silent.LocalAddr().String()}}, nil
		},
		Timeout: time.Minute, QueryTimeout: 30 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := propagation.Wait(ctx, changes, opts)
		done <- err
	}()
	buf := make([]byte, 512)
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := silent.ReadFrom(buf); err != nil {
		t.Fatalf("no query arrived: %v", err)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Wait = %v, want context.Canceled", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Wait returned %v after the cancel", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return within 10s of the cancel (the query's timeout is 30s)")
	}
	// A goroutine that has signalled its end may not have exited yet: wait
	// a bounded time for the stacks to settle. A query left in flight would
	// still be there (its timeout is 30s).
	if stacks, left := goroutinesIn(5*time.Second, "propagation.(*waiter)", "dnsclient.exchange"); left != "" {
		t.Errorf("a goroutine in %s is left 5s after Wait returned:\n%s", left, stacks)
	}
}

// goroutinesIn polls the stacks of all goroutines until none runs one of
// fns, for at most bound; it returns the stacks and a function still found,
// or "" once none is.
func goroutinesIn(bound time.Duration, fns ...string) (stacks []byte, left string) {
	deadline := time.Now().Add(bound)
	buf := make([]byte, 1<<20)
	for {
		stacks = buf[:runtime.Stack(buf, true)]
		left = ""
		for _, fn := range fns {
			if bytes.Contains(stacks, []byte(fn)) {
				left = fn
				break
			}
		}
		if left == "" || time.Now().After(deadline) {
			return stacks, left
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTerminalLine: on a terminal the progress line is rewritten in place,
// cut to the terminal's width, and ended by a newline when Wait fails. The
// wait fails by a cancel once three lines were written, not by a bound
// that a loaded machine could reach before the third poll.
func TestTerminalLine(t *testing.T) {
	t.Parallel()
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.LocalAddr().String()
	l.Close()
	out := newLines()
	opts := propagation.Options{
		Nameservers: func(ctx context.Context, zone string) ([]verify.NameServer, error) {
			return []verify.NameServer{{Name: "ns1.example.org", Addr: dead}}, nil
		},
		Timeout: time.Minute, MinInterval: 20 * time.Millisecond,
		Progress: out, Terminal: true, Width: 40,
	}
	changes := []plan.Change{change("@", "MX", plan.Create, nil, set(300, "10 mx1.example.org."))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := propagation.Wait(ctx, changes, opts)
		done <- err
	}()
	out.waitFor(t, 3)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait = %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Wait did not return within 20s of the cancel")
	}
	text := out.String()
	if !strings.HasSuffix(text, "\n") || strings.Count(text, "\n") != 1 {
		t.Errorf("output %q: want one line rewritten, then a newline", text)
	}
	parts := strings.Split(strings.TrimSuffix(text, "\n"), "\r\033[K")
	if len(parts) < 4 || parts[0] != "" {
		t.Fatalf("output %q: want at least three rewrites", text)
	}
	for _, p := range parts[1:] {
		if n := len([]rune(p)); n >= 40 || !strings.HasPrefix(p, "Waiting for DNS propagation: 0/1") {
			t.Errorf("line %q (%d runes): want a progress line under 40 runes", p, n)
		}
	}
	if !strings.HasSuffix(parts[len(parts)-1], "…") {
		t.Errorf("last line %q: want it cut with …", parts[len(parts)-1])
	}
}
