// Package refresh reads the real state that a plan compares against (the
// records of every zone mailctl manages, through the DNS providers) and
// makes the plan. Zones are read in parallel, one list call each.
package refresh

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/libdns/libdns"
	"golang.org/x/sync/errgroup"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/dkimrotate"
	"github.com/mailctl/mailctl/providers/dns"
	"github.com/mailctl/mailctl/providers/ptr"
)

// Providers builds the DNS provider of every provider block whose kind
// manages DNS, keyed by address (provider.KIND.NAME). Relative paths of the
// zonefile kind are resolved against the configuration directory.
func Providers(cfg *config.Config, logger *slog.Logger) (map[string]dns.Provider, error) {
	out := map[string]dns.Provider{}
	for _, p := range cfg.Providers {
		k, ok := config.Kinds[p.Kind]
		if !ok || k.Caps&config.CapDNS == 0 {
			continue
		}
		attrs := map[string]string{}
		for n, v := range p.Attrs {
			attrs[n] = v.Str
		}
		if p.Kind == "zonefile" && attrs["dir"] != "" && !filepath.IsAbs(attrs["dir"]) {
			attrs["dir"] = filepath.Join(cfg.Dir, attrs["dir"])
		}
		prov, err := dns.New(p.Kind, dns.Config{Name: p.Name, Attrs: attrs, Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("set up %s: %w", p.Addr(), err)
		}
		out[p.Addr()] = prov
	}
	return out, nil
}

// PTRProviders builds the reverse DNS provider of every provider block
// that a server uses as ptr, keyed by address.
func PTRProviders(cfg *config.Config, logger *slog.Logger) (map[string]ptr.Provider, error) {
	out := map[string]ptr.Provider{}
	for _, s := range cfg.Servers {
		p := s.PTR
		if p == nil || out[p.Addr()] != nil {
			continue
		}
		attrs := map[string]string{}
		for n, v := range p.Attrs {
			attrs[n] = v.Str
		}
		prov, err := ptr.New(p.Kind, ptr.Config{Name: p.Name, Attrs: attrs, Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("set up %s for reverse DNS: %w", p.Addr(), err)
		}
		out[p.Addr()] = prov
	}
	return out, nil
}

// Options tune Plan.
type Options struct {
	// Targets restrict the plan to these addresses (see plan.Selected).
	Targets []string
	// Parallelism bounds concurrent zone reads; default 10.
	Parallelism int
	// NoRefresh plans against an empty state without reading anything.
	NoRefresh bool
	// Destroy plans the removal of every owned record instead.
	Destroy bool
	// PTR holds the reverse DNS providers (from PTRProviders); servers
	// whose ptr provider is missing here get no ptr resource.
	PTR map[string]ptr.Provider
	// Servers holds the read-back and desired state of each server that
	// was contacted, by name. The DKIM records of a server that was not
	// contacted (a plan targeted elsewhere) keep their current value.
	Servers map[string]ServerPlan
	// Keys are the DKIM public keys the servers reported.
	Keys []desired.DKIMKey
	// Now is the time the plan is made at (DKIM rotations are due by
	// date); zero means time.Now().
	Now time.Time
	// Progress reports reads that take long; nil reports nothing.
	Progress *plan.Progress
	Logger   *slog.Logger
}

// ServerPlan is a server's state as read back (Before, nil when not
// deployed) and as configured (After).
type ServerPlan struct {
	Before *plan.ServerState
	After  plan.ServerState
	// Store is the state of the server's PostgreSQL store; nil for the
	// embedded store.
	Store *StorePlan
	// DKIMDiffers lists the domains whose DKIM keys on this server are
	// not those of the domain's first server (nodes.go).
	DKIMDiffers []string
}

// State is what refresh read.
type State struct {
	// Zones holds each zone's records by plan.ZoneKey.
	Zones map[string][]libdns.RR
}

// Plan reads the state of every zone the (targeted) desired records live
// in and returns the plan.
func Plan(ctx context.Context, cfg *config.Config, provs map[string]dns.Provider, opts Options) (*plan.Plan, *State, error) {
	want := desired.Records(cfg, opts.Keys)
	var dkimChanges []plan.Change
	if opts.Servers != nil && !opts.Destroy {
		read := map[string]bool{}
		for name, sp := range opts.Servers {
			read[name] = sp.Before != nil && sp.Before.Running
		}
		now := opts.Now
		if now.IsZero() {
			now = time.Now()
		}
		var err error
		if want, dkimChanges, err = dkimrotate.Plan(cfg, desired.SourceKeys(cfg, opts.Keys), read, now, want); err != nil {
			return nil, nil, err
		}
	}
	var sel []desired.RRSet
	for _, w := range want {
		if !plan.Selected(plan.Change{Address: w.Address(), Domain: w.Domain}, opts.Targets) && !dkimRecordOf(w, opts.Targets) {
			continue
		}
		if w.Unknown && opts.Servers != nil {
			if _, read := opts.Servers[strings.TrimPrefix(w.Source, "server.")]; !read {
				continue // keep the current value: its server is not part of this plan
			}
		}
		sel = append(sel, w)
	}
	if opts.Destroy {
		for i := range sel {
			sel[i].Values, sel[i].Unknown = nil, false
		}
	}
	// Every failed read is reported, not only the first: a DNS error
	// behind an SSH error must be seen too.
	var errs []error
	if opts.NoRefresh {
		// No network at all: a zone that is not configured is the domain.
		for i := range sel {
			if sel[i].Zone == "" {
				sel[i].Zone = sel[i].Domain
			}
		}
	} else if err := resolveZones(ctx, provs, sel, opts.Progress); err != nil {
		errs = append(errs, err)
		resolved := sel[:0]
		for _, s := range sel {
			if s.Zone != "" {
				resolved = append(resolved, s)
			}
		}
		sel = resolved
	}
	st := &State{Zones: map[string][]libdns.RR{}}
	p := &plan.Plan{
		FormatVersion: plan.FormatVersion,
		ConfigDigest:  ConfigDigest(cfg),
		State:         map[string]string{},
		Targets:       opts.Targets,
		Refreshed:     !opts.NoRefresh,
	}
	if !opts.NoRefresh {
		if err := readZones(ctx, provs, sel, st, opts); err != nil {
			errs = append(errs, err)
		}
		for k, rrs := range st.Zones {
			p.State["zone:"+k] = Digest(rrs)
		}
	}
	if err := audit(sel); err != nil {
		errs = append(errs, err)
	}
	p.Changes = plan.DiffDNS(sel, st.Zones)
	ptrs, err := planPTR(ctx, cfg, opts)
	if err != nil {
		errs = append(errs, err)
	}
	for _, name := range sortedKeys(opts.Servers) {
		if err := unreadable(name, opts.Servers[name], opts.Targets); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	for _, c := range ptrs {
		p.State[c.Address] = digestValues(c.Before)
	}
	p.Changes = append(p.Changes, ptrs...)
	for _, c := range dkimChanges {
		if plan.Selected(c, opts.Targets) {
			p.Changes = append(p.Changes, c)
		}
	}
	for _, name := range sortedKeys(opts.Servers) {
		sp := opts.Servers[name]
		for _, c := range nodeChanges(plan.DiffServer(name, sp.Before, sp.After), sp, p) {
			if plan.Selected(c, opts.Targets) || plan.Selected(plan.Change{Address: "server." + name}, opts.Targets) {
				p.Changes = append(p.Changes, c)
			}
		}
		p.State["server."+name] = serverDigest(sp.Before)
	}
	p.Changes = mergeUsers(p.Changes)
	p.Sort()
	return p, st, nil
}

// dkimRecordOf reports whether w is a DKIM key record of a domain whose
// rotation is targeted (-target dkim.example.org): like Terraform's
// -target, a resource brings what it depends on, and a rotation's
// activation waits for its new selector's records.
func dkimRecordOf(w desired.RRSet, targets []string) bool {
	return w.Type == "TXT" && strings.HasSuffix(w.Name, "._domainkey."+w.Domain) && slices.Contains(targets, "dkim."+w.Domain)
}

// ErrServerNotRunning is wrapped by the plan's error for a server that is
// installed but does not answer: its users and DKIM keys are unknown.
var ErrServerNotRunning = errors.New("server not running")

// unreadable reports a server whose state could not be read (installed,
// not running) when the plan includes what depends on it: its users and
// DKIM records. A plan targeted at the server resource alone (to start it)
// goes on.
func unreadable(name string, sp ServerPlan, targets []string) error {
	if sp.Before == nil || sp.Before.Running {
		return nil
	}
	onlyServer := len(targets) > 0
	for _, t := range targets {
		if t != "server" && t != "server."+name {
			onlyServer = false
		}
	}
	if onlyServer {
		return nil
	}
	return fmt.Errorf("server.%s: %w: it is installed but does not answer, so its users and DKIM keys are unknown and the plan cannot tell what would change; start it with 'mailctl apply -target=server.%s' (only the server), then plan again",
		name, ErrServerNotRunning, name)
}

// zoneCache remembers each provider's zone list during one resolution.
type zoneCache struct {
	mu    sync.Mutex
	lists map[string][]string
	index map[string]*dns.ZoneIndex
}

// ResolveZones fills the Zone of each set: the domain's configured zone,
// else the longest zone the provider lists that contains the domain, else
// the domain itself.
//
// Every domain that cannot be resolved is reported (its sets keep an empty
// Zone); a provider whose zone list cannot be read is reported once.
func ResolveZones(ctx context.Context, cfg *config.Config, provs map[string]dns.Provider, sets []desired.RRSet) error {
	return resolveZones(ctx, provs, sets, nil)
}

func resolveZones(ctx context.Context, provs map[string]dns.Provider, sets []desired.RRSet, progress *plan.Progress) error {
	zc := &zoneCache{lists: map[string][]string{}, index: map[string]*dns.ZoneIndex{}}
	resolved := map[string]string{}
	failed := map[string]bool{} // domains and providers already reported
	var errs []error
	for i := range sets {
		s := &sets[i]
		if s.Zone != "" {
			continue
		}
		if z, ok := resolved[s.Domain]; ok {
			s.Zone = z
			continue
		}
		if failed[s.Domain] || failed[s.Provider] {
			continue
		}
		prov, ok := provs[s.Provider]
		if !ok {
			failed[s.Domain] = true
			errs = append(errs, fmt.Errorf("domain %s: no DNS provider %s", s.Domain, s.Provider))
			continue
		}
		z := s.Domain
		if zoner, ok := prov.(dns.Zoner); ok {
			zc.mu.Lock()
			list, cached := zc.lists[s.Provider]
			index := zc.index[s.Provider]
			zc.mu.Unlock()
			if !cached {
				var err error
				done := progress.Start(s.Provider + ": Still listing zones")
				list, err = zoner.Zones(ctx)
				done()
				if err != nil {
					failed[s.Provider] = true
					errs = append(errs, fmt.Errorf("list zones of %s: %w", s.Provider, err))
					continue
				}
				index = dns.NewZoneIndex(list)
				zc.mu.Lock()
				zc.lists[s.Provider] = list
				zc.index[s.Provider] = index
				zc.mu.Unlock()
			}
			z = index.Find(s.Domain)
			// A zone file is created on first apply: no file yet is no error.
			if z == "" && strings.HasPrefix(s.Provider, "provider.zonefile.") {
				z = s.Domain
			}
			if z == "" {
				failed[s.Domain] = true
				errs = append(errs, fmt.Errorf("domain %s: %s holds no zone that contains it (zones: %s); create the zone there or set zone = \"...\" in the domain block",
					s.Domain, s.Provider, strings.Join(list, ", ")))
				continue
			}
		}
		z = strings.ToLower(strings.TrimSuffix(z, "."))
		resolved[s.Domain] = z
		s.Zone = z
	}
	return errors.Join(errs...)
}

func readZones(ctx context.Context, provs map[string]dns.Provider, sets []desired.RRSet, st *State, opts Options) error {
	type zoneRef struct{ provider, zone string }
	seen := map[zoneRef]bool{}
	var refs []zoneRef
	for _, s := range sets {
		r := zoneRef{s.Provider, s.Zone}
		if !seen[r] {
			seen[r] = true
			refs = append(refs, r)
		}
	}
	sort.Slice(refs, func(i, j int) bool {
		return plan.ZoneKey(refs[i].provider, refs[i].zone) < plan.ZoneKey(refs[j].provider, refs[j].zone)
	})
	// Every zone is read even when one fails, so that every failure is
	// reported, in zone order.
	var mu sync.Mutex
	errs := make([]error, len(refs))
	var g errgroup.Group
	g.SetLimit(max(1, cmpOr(opts.Parallelism, 10)))
	for i, r := range refs {
		g.Go(func() error {
			done := opts.Progress.Start(fmt.Sprintf("%s: Still reading zone %s", r.provider, r.zone))
			rrs, err := provs[r.provider].Records(ctx, r.zone)
			done()
			if err != nil {
				errs[i] = fmt.Errorf("read zone %s at %s: %w", r.zone, r.provider, err)
				return nil
			}
			mu.Lock()
			st.Zones[plan.ZoneKey(r.provider, r.zone)] = rrs
			mu.Unlock()
			return nil
		})
	}
	g.Wait()
	return errors.Join(errs...)
}

// audit raises desired TTLs to each provider's minimum, so that a provider
// that stores the minimum does not show an endless diff, and rejects, before
// any API call, records a provider cannot hold.
func audit(sets []desired.RRSet) error {
	var errs []error
	for i := range sets {
		s := &sets[i]
		kind := strings.Split(s.Provider, ".")
		if len(kind) < 2 {
			continue
		}
		k, ok := dns.Lookup(kind[1])
		if !ok {
			continue
		}
		if min := int(k.Capabilities.MinTTL.Seconds()); s.TTL < min {
			s.TTL = min
		}
		name := dns.RelativeName(s.Name, s.Zone)
		for _, v := range s.Values {
			if err := k.Capabilities.Check(libdns.RR{Name: name, Type: s.Type, Data: v}); err != nil {
				errs = append(errs, fmt.Errorf("%s at %s: %w", s.Address(), s.Provider, err))
				break
			}
		}
	}
	return errors.Join(errs...)
}

func cmpOr(a, b int) int {
	if a > 0 {
		return a
	}
	return b
}

// Digest is a stable digest of a zone's records, for stale-plan detection.
func Digest(rrs []libdns.RR) string {
	lines := make([]string, 0, len(rrs))
	for _, r := range rrs {
		lines = append(lines, fmt.Sprintf("%s\t%s\t%d\t%s", strings.ToLower(r.Name), r.Type, int(r.TTL.Seconds()), r.Data))
	}
	slices.Sort(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// ConfigDigest identifies the configuration: what its files say and the
// values of its variables. Comments, blank lines and layout are left out
// (the files' HCL tokens are digested, not their bytes), so that a
// comment-only edit does not make a saved plan stale.
func ConfigDigest(cfg *config.Config) string {
	names := make([]string, 0, len(cfg.Files))
	for n := range cfg.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00", filepath.Base(n))
		writeTokens(h, n, cfg.Files[n].Bytes)
	}
	for _, v := range cfg.Variables {
		fmt.Fprintf(h, "var\x00%s\x00%s\x00", v.Name, v.Value.Str)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// writeTokens writes src to w without what does not change its meaning:
// its config.LayoutFree form, else its HCL tokens without comments and
// with each run of line ends as one; a file that is not native HCL syntax
// is written as is.
func writeTokens(w io.Writer, name string, src []byte) {
	if strings.HasSuffix(name, ".hcl") {
		if form, ok := config.LayoutFree(src); ok {
			fmt.Fprintf(w, "layout-free\x00%d\x00", len(form))
			w.Write(form)
			return
		}
		// Piece by piece (see config.SplitTopLevel): one token slice of a
		// large file was most of a plan's memory. A piece that does not
		// lex (a cut the lexer disagrees with) falls back to one piece.
		for _, size := range []int{config.PieceSize, len(src) + 1} {
			if form, ok := tokenForm(name, src, size); ok {
				w.Write(form)
				return
			}
		}
	}
	fmt.Fprintf(w, "%d\x00", len(src))
	w.Write(src)
}

// tokenForm returns what writeTokens writes for src lexed in pieces of
// about size bytes, or false when a piece does not lex.
func tokenForm(name string, src []byte, size int) ([]byte, bool) {
	buf := bytes.NewBuffer(make([]byte, 0, len(src)+len(src)/2))
	newline := true // at the start, as after a line end
	pieces := config.SplitTopLevel(src, size)
	for i, p := range pieces {
		toks, diags := hclsyntax.LexConfig(p.Src, name, p.Start)
		if diags.HasErrors() {
			return nil, false
		}
		for _, t := range toks {
			typ := t.Type
			if typ == hclsyntax.TokenEOF && i < len(pieces)-1 {
				continue // one EOF, at the end of the file
			}
			if typ == hclsyntax.TokenComment {
				if !bytes.HasSuffix(t.Bytes, []byte("\n")) {
					continue // an inline /* */ comment
				}
				typ = hclsyntax.TokenNewline // a line comment ends its line
			}
			if typ == hclsyntax.TokenNewline {
				if newline {
					continue
				}
				newline = true
				buf.WriteString("\n\x00")
				continue
			}
			newline = false
			// As fmt.Fprintf(buf, "%d\x00%d\x00", typ, len(t.Bytes)).
			b := strconv.AppendInt(buf.AvailableBuffer(), int64(typ), 10)
			b = append(b, 0)
			b = strconv.AppendInt(b, int64(len(t.Bytes)), 10)
			buf.Write(append(b, 0))
			buf.Write(t.Bytes)
		}
	}
	return buf.Bytes(), true
}

// planPTR reads the reverse DNS of every server address whose server names
// a ptr provider, and returns one ptr.<ip> change each.
func planPTR(ctx context.Context, cfg *config.Config, opts Options) ([]plan.Change, error) {
	var out []plan.Change
	var errs []error
	for _, s := range cfg.Servers {
		if s.PTR == nil {
			continue
		}
		prov := opts.PTR[s.PTR.Addr()]
		if prov == nil {
			continue
		}
		for _, ip := range []netip.Addr{s.IPv4, s.IPv6} {
			if !ip.IsValid() {
				continue
			}
			c := plan.Change{Address: "ptr." + ip.String(), Type: plan.KindPTR, Provider: s.PTR.Addr(), Name: ip.String(),
				After: &plan.RRSet{Values: []string{ptr.Canonical(s.Hostname)}}}
			if !plan.Selected(c, opts.Targets) {
				continue
			}
			if !opts.NoRefresh && !opts.Destroy {
				done := opts.Progress.Start(fmt.Sprintf("%s: Still reading the reverse DNS of %s", s.PTR.Addr(), ip))
				cur, err := prov.Get(ctx, ip)
				done()
				if err != nil {
					errs = append(errs, fmt.Errorf("read reverse DNS of %s at %s: %w", ip, s.PTR.Addr(), err))
					continue
				}
				if cur != "" {
					c.Before = &plan.RRSet{Values: []string{ptr.Canonical(cur)}}
				}
			}
			if opts.Destroy {
				// The provider's default reverse name is restored by an empty Set.
				c.Before, c.After = c.After, nil
			}
			c.Action = plan.PTRAction(c.Before, c.After)
			out = append(out, c)
		}
	}
	return out, errors.Join(errs...)
}

func digestValues(s *plan.RRSet) string {
	if s == nil {
		return ""
	}
	return strings.Join(s.Values, ",")
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func serverDigest(s *plan.ServerState) string {
	if s == nil {
		return "not deployed"
	}
	return fmt.Sprintf("%s %s %v %s", s.Release, s.ConfigDigest, s.Running, strings.Join(s.Users, ","))
}
