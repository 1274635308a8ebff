// Package zonefile is a DNS provider that keeps zones as RFC 1035 master
// files (section 5) named <dir>/<zone>.zone, for users who serve their zones
// from git or from a server reading files (BIND, Knot, NSD). Every change
// bumps the SOA serial (RFC 1912 section 2.2 date format when possible),
// writes the file atomically with records in a stable sorted order, and can
// run a reload command.
//
// An apply writes each zone once: all of its RRsets' changes (ApplyZone),
// one serial bump, one reload.
//
// Attributes: dir (required), reload_command (optional, run with sh -c after
// each write of a zone, with MAILCTL_ZONE and MAILCTL_ZONE_FILE in its
// environment),
// nameserver (optional, the SOA MNAME and apex NS of a new file, default
// ns1.<zone>.).
package zonefile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libdns/libdns"
	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/internal/atomicfile"
	"github.com/mailctl/mailctl/providers/dns"
)

// Kind is the registered kind name.
const Kind = "zonefile"

func init() {
	dns.Register(dns.Kind{
		Name: Kind,
		Capabilities: dns.Capabilities{
			DNS:    true,
			SRV:    true,
			Atomic: true,
		},
		Attributes: []dns.Attribute{
			{Name: "dir", Required: true, Doc: "directory holding <zone>.zone files"},
			{Name: "reload_command", Doc: "shell command run after each change (e.g. knotc zone-reload)"},
			{Name: "nameserver", Doc: "SOA MNAME and NS of newly created zone files"},
		},
		New: func(cfg dns.Config) (dns.Provider, error) {
			return &Provider{
				Dir:           cfg.Get("dir", ""),
				ReloadCommand: cfg.Get("reload_command", ""),
				Nameserver:    cfg.Get("nameserver", ""),
				Logger:        cfg.Log(),
			}, nil
		},
	})
}

// Provider reads and writes zone files in Dir.
type Provider struct {
	Dir           string
	ReloadCommand string
	// Nameserver is the SOA MNAME and apex NS target of a new file; default
	// ns1.<zone>.
	Nameserver string
	Logger     *slog.Logger
	// Now is the clock used for SOA serials; nil means time.Now.
	Now func() time.Time

	mu sync.Mutex
}

var (
	_ dns.Provider    = (*Provider)(nil)
	_ dns.Zoner       = (*Provider)(nil)
	_ dns.ZoneApplier = (*Provider)(nil)
)

// Path returns the file holding zone.
func (p *Provider) Path(zone string) string {
	return filepath.Join(p.Dir, strings.ToLower(strings.TrimSuffix(zone, "."))+".zone")
}

// Zones lists the zones with a file in Dir.
func (p *Provider) Zones(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(p.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list zone files in %q: %w", p.Dir, err)
	}
	var zones []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".zone") {
			zones = append(zones, strings.TrimSuffix(e.Name(), ".zone"))
		}
	}
	return zones, nil
}

// Records returns the records of the zone file; a missing file is an empty
// zone.
func (p *Provider) Records(ctx context.Context, zone string) ([]libdns.RR, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rrs, err := p.read(zone)
	if err != nil {
		return nil, err
	}
	out := make([]libdns.RR, 0, len(rrs))
	for _, rr := range rrs {
		if dns.Hidden(mdns.TypeToString[rr.Header().Rrtype]) {
			continue
		}
		out = append(out, dns.FromRR(rr, zone))
	}
	dns.Sort(out)
	return out, nil
}

// read parses the zone file; a missing file gives no records.
func (p *Provider) read(zone string) ([]mdns.RR, error) {
	path := p.Path(zone)
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("read zone file %q: %w", path, err)
	}
	return Parse(data, zone, path)
}

// Parse parses a zone file's content with origin zone.
func Parse(data []byte, zone, path string) ([]mdns.RR, error) {
	zp := mdns.NewZoneParser(bytes.NewReader(data), dns.AbsoluteName("@", zone), path)
	var rrs []mdns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("parse zone file %q: %w", path, err)
	}
	return rrs, nil
}

// Apply deletes del and adds add in the zone file, bumps the serial, writes
// the file atomically and runs the reload command.
func (p *Provider) Apply(ctx context.Context, zone string, del, add []libdns.RR) error {
	return p.ApplyZone(ctx, zone, []dns.SetEdit{{Del: del, Add: add}})
}

// ApplyZone applies every edit to the zone file in memory, in order, then
// bumps the serial once, writes the file once (atomically) and runs the
// reload command once.
func (p *Provider) ApplyZone(ctx context.Context, zone string, edits []dns.SetEdit) error {
	ndel, nadd := 0, 0
	for _, e := range edits {
		ndel, nadd = ndel+len(e.Del), nadd+len(e.Add)
	}
	if ndel == 0 && nadd == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	kept, err := p.read(zone)
	if err != nil {
		return err
	}
	origin := dns.AbsoluteName("@", zone)
	for _, e := range edits {
		if kept, err = edit(kept, zone, e); err != nil {
			return err
		}
	}
	kept = p.withSOA(kept, origin)
	path := p.Path(zone)
	if err := writeAtomic(path, Format(kept, origin)); err != nil {
		return err
	}
	p.log().InfoContext(ctx, "zone file written", "zone", zone, "path", path, "rrsets", len(edits), "deleted", ndel, "added", nadd)
	return p.reload(ctx, zone, path)
}

// edit returns rrs less the records of e.Del (name, type and data; TTL
// aside) plus those of e.Add, each replacing an identical record (a TTL
// change).
func edit(rrs []mdns.RR, zone string, e dns.SetEdit) ([]mdns.RR, error) {
	drop := map[dns.Key]bool{}
	for _, r := range e.Del {
		drop[dns.KeyOf(dns.Canonical(r, zone))] = true
	}
	add := map[dns.Key]bool{}
	var added []mdns.RR
	for _, r := range e.Add {
		c := dns.Canonical(r, zone)
		rr, err := dns.ToRR(c, zone)
		if err != nil {
			return nil, fmt.Errorf("add record to zone %q: %w", zone, err)
		}
		k := dns.KeyOf(c)
		if add[k] {
			// The last of identical records wins, as when added in turn.
			added = slices.DeleteFunc(added, func(o mdns.RR) bool { return dns.KeyOf(dns.FromRR(o, zone)) == k })
		}
		add[k] = true
		added = append(added, rr)
	}
	var kept []mdns.RR
	for _, rr := range rrs {
		k := dns.KeyOf(dns.FromRR(rr, zone))
		if drop[k] || add[k] {
			continue
		}
		kept = append(kept, rr)
	}
	return append(kept, added...), nil
}

func (p *Provider) log() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// withSOA bumps the serial of the zone's SOA, or adds a SOA and NS when the
// zone has none.
func (p *Provider) withSOA(rrs []mdns.RR, origin string) []mdns.RR {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	for _, rr := range rrs {
		if soa, ok := rr.(*mdns.SOA); ok {
			soa.Serial = NextSerial(soa.Serial, now())
			return rrs
		}
	}
	ns := p.Nameserver
	if ns == "" {
		ns = "ns1." + origin
	}
	ns = mdns.Fqdn(ns)
	soa := &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: origin, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: 3600},
		Ns:      ns,
		Mbox:    "hostmaster." + origin,
		Serial:  NextSerial(0, now()),
		Refresh: 3600,
		Retry:   900,
		Expire:  1209600,
		Minttl:  300,
	}
	out := []mdns.RR{soa}
	hasNS := false
	for _, rr := range rrs {
		if rr.Header().Rrtype == mdns.TypeNS && strings.EqualFold(rr.Header().Name, origin) {
			hasNS = true
		}
	}
	if !hasNS {
		out = append(out, &mdns.NS{
			Hdr: mdns.RR_Header{Name: origin, Rrtype: mdns.TypeNS, Class: mdns.ClassINET, Ttl: 3600},
			Ns:  ns,
		})
	}
	return append(out, rrs...)
}

// NextSerial returns a serial greater than old (RFC 1982 arithmetic), in the
// YYYYMMDDnn form when old allows it.
func NextSerial(old uint32, now time.Time) uint32 {
	day, _ := strconv.ParseUint(now.UTC().Format("20060102"), 10, 32)
	base := uint32(day) * 100
	if old < base {
		return base
	}
	return old + 1
}

// Format prints rrs as a zone file with origin: SOA first, then apex NS, then
// every other record sorted by name, type and data, so that the output is
// stable and diffs in git show only real changes.
func Format(rrs []mdns.RR, origin string) []byte {
	zone := strings.TrimSuffix(origin, ".")
	type line struct {
		rank           int
		name, typ, dat string
		ttl            uint32
	}
	lines := make([]line, 0, len(rrs))
	for _, rr := range rrs {
		h := rr.Header()
		l := line{
			name: dns.RelativeName(h.Name, zone),
			typ:  mdns.TypeToString[h.Rrtype],
			ttl:  h.Ttl,
			rank: 2,
		}
		switch t := rr.(type) {
		case *mdns.TXT:
			l.dat = dns.QuoteTXT(strings.Join(t.Txt, ""))
		default:
			l.dat = dns.DataOf(rr)
		}
		switch {
		case h.Rrtype == mdns.TypeSOA:
			l.rank = 0
		case h.Rrtype == mdns.TypeNS && l.name == "@":
			l.rank = 1
		}
		lines = append(lines, l)
	}
	sortLines := func(a, b line) int {
		if a.rank != b.rank {
			return a.rank - b.rank
		}
		// apex first, then names in DNS order (by reversed labels).
		if c := strings.Compare(nameKey(a.name), nameKey(b.name)); c != 0 {
			return c
		}
		if c := strings.Compare(a.typ, b.typ); c != 0 {
			return c
		}
		return strings.Compare(a.dat, b.dat)
	}
	slices.SortFunc(lines, sortLines)
	var b bytes.Buffer
	fmt.Fprintf(&b, "; zone %s, written by mailctl\n$ORIGIN %s\n", zone, origin)
	for i, l := range lines {
		if i > 0 && lines[i-1] == l {
			continue
		}
		fmt.Fprintf(&b, "%s\t%d\tIN\t%s\t%s\n", l.name, l.ttl, l.typ, l.dat)
	}
	return b.Bytes()
}

// nameKey sorts the apex first and children after their parents.
func nameKey(name string) string {
	if name == "@" {
		return ""
	}
	labels := strings.Split(name, ".")
	for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
		labels[i], labels[j] = labels[j], labels[i]
	}
	return "\x01" + strings.Join(labels, "\x00")
}

// writeAtomic replaces the zone file at path (internal/atomicfile),
// creating its directory.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create zone directory %q: %w", dir, err)
	}
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write zone file: %w", err)
	}
	return nil
}

func (p *Provider) reload(ctx context.Context, zone, path string) error {
	if p.ReloadCommand == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", p.ReloadCommand)
	cmd.Env = append(os.Environ(), "MAILCTL_ZONE="+zone, "MAILCTL_ZONE_FILE="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 500 {
			msg = msg[len(msg)-500:]
		}
		return fmt.Errorf("run reload command for zone %q: %w: %s", zone, err, msg)
	}
	return nil
}
