package dns

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libdns/libdns"
	mdns "github.com/miekg/dns"
)

// Hidden reports whether records of type t are left out of Records: the
// zone's SOA and NS, and DNSSEC records, which mailctl never manages.
func Hidden(t string) bool {
	switch strings.ToUpper(t) {
	case "SOA", "NS", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "DS", "CDS", "CDNSKEY", "ZONEMD":
		return true
	}
	return false
}

// TXTLike maps provider-specific TXT types (OVH's SPF, DKIM and DMARC) to TXT.
func TXTLike(t string) string {
	switch strings.ToUpper(t) {
	case "SPF", "DKIM", "DMARC":
		return "TXT"
	}
	return strings.ToUpper(t)
}

// RelativeName returns name (absolute, with or without trailing dot, or
// already relative) relative to zone, "@" for the apex, in lower case.
func RelativeName(name, zone string) string {
	n := normName(name)
	z := normName(zone)
	switch {
	case n == "" || n == "@" || n == z:
		return "@"
	case strings.HasSuffix(n, "."+z):
		return strings.TrimSuffix(n, "."+z)
	}
	return n
}

// AbsoluteName returns the fully qualified name (with trailing dot) of a
// name relative to zone. A name ending in a dot is already absolute.
func AbsoluteName(name, zone string) string {
	if strings.HasSuffix(name, ".") && name != "." {
		return strings.ToLower(name)
	}
	n := normName(name)
	z := normName(zone)
	if n == "" || n == "@" || n == z {
		return z + "."
	}
	if strings.HasSuffix(n, "."+z) {
		return n + "."
	}
	return n + "." + z + "."
}

// Canonical returns rr in the canonical form providers report: name
// relative and lower case, type upper case (TXT-like types as TXT), TTL in
// whole seconds, data re-printed from its parsed form with fully qualified
// targets (relative targets are qualified with zone). TXT data is plain text
// already and is kept as is (adapters turn provider forms into plain text
// with PlainTXT). Data that does not parse is kept as given.
func Canonical(rr libdns.RR, zone string) libdns.RR {
	out := libdns.RR{
		Name: RelativeName(rr.Name, zone),
		Type: TXTLike(rr.Type),
		TTL:  rr.TTL.Truncate(time.Second),
		Data: rr.Data,
	}
	if out.Type == "TXT" {
		return out
	}
	out.Data = strings.TrimSpace(out.Data)
	parsed, err := ToRR(out, zone)
	if err != nil {
		return out
	}
	out.Data = DataOf(parsed)
	return out
}

// ToRR converts a record to a miekg/dns RR. TXT data is plain text and is
// split into 255-byte character-strings.
func ToRR(rr libdns.RR, zone string) (mdns.RR, error) {
	name := AbsoluteName(rr.Name, zone)
	ttl := uint32(rr.TTL / time.Second)
	typ := TXTLike(rr.Type)
	if typ == "TXT" {
		return &mdns.TXT{
			Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: ttl},
			Txt: SplitTXT(rr.Data),
		}, nil
	}
	if _, ok := mdns.StringToType[typ]; !ok {
		return nil, fmt.Errorf("record %s %s: unknown type", rr.Name, rr.Type)
	}
	text := fmt.Sprintf("$ORIGIN %s\n%s %d IN %s %s", AbsoluteName("@", zone), name, ttl, typ, rr.Data)
	parsed, err := mdns.NewRR(text)
	if err != nil {
		return nil, fmt.Errorf("parse record %s %s %q: %w", rr.Name, typ, rr.Data, err)
	}
	if parsed == nil {
		return nil, fmt.Errorf("parse record %s %s %q: empty", rr.Name, typ, rr.Data)
	}
	return parsed, nil
}

// FromRR converts a miekg/dns RR to a canonical record relative to zone.
func FromRR(rr mdns.RR, zone string) libdns.RR {
	h := rr.Header()
	return libdns.RR{
		Name: RelativeName(h.Name, zone),
		Type: TXTLike(mdns.TypeToString[h.Rrtype]),
		TTL:  time.Duration(h.Ttl) * time.Second,
		Data: DataOf(rr),
	}
}

// DataOf returns the presentation form of rr's data (without the header);
// for TXT the joined plain text.
func DataOf(rr mdns.RR) string {
	if t, ok := rr.(*mdns.TXT); ok {
		return strings.Join(t.Txt, "")
	}
	if t, ok := rr.(*mdns.SPF); ok {
		return strings.Join(t.Txt, "")
	}
	s := rr.String()
	h := rr.Header().String()
	return strings.TrimSpace(strings.TrimPrefix(s, h))
}

// SplitTXT splits plain text into character-strings of at most 255 bytes
// (RFC 1035 section 3.3.14), never splitting a UTF-8 sequence.
func SplitTXT(s string) []string {
	if s == "" {
		return []string{""}
	}
	var out []string
	for len(s) > 255 {
		cut := 255
		for cut > 0 && cut < len(s) && s[cut]&0xC0 == 0x80 {
			cut--
		}
		out = append(out, s[:cut])
		s = s[cut:]
	}
	return append(out, s)
}

// PlainTXT turns TXT data as providers return it into plain text: a
// sequence of quoted character-strings (`"abc" "def"`) is unquoted,
// unescaped and joined; anything else is returned unchanged.
func PlainTXT(s string) string {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, `"`) {
		return s
	}
	parts, ok := parseQuoted(s)
	if !ok {
		return s
	}
	return strings.Join(parts, "")
}

// QuoteTXT returns plain text as zone-file character-strings of at most 255
// bytes each, quoted and escaped.
func QuoteTXT(s string) string {
	chunks := SplitTXT(s)
	var b strings.Builder
	for i, c := range chunks {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte('"')
		for j := 0; j < len(c); j++ {
			ch := c[j]
			switch {
			case ch == '"' || ch == '\\':
				b.WriteByte('\\')
				b.WriteByte(ch)
			case ch < 0x20 || ch == 0x7f:
				fmt.Fprintf(&b, "\\%03d", ch)
			default:
				b.WriteByte(ch)
			}
		}
		b.WriteByte('"')
	}
	return b.String()
}

// parseQuoted parses `"a" "b"` with RFC 1035 escapes (\X and \DDD).
func parseQuoted(s string) ([]string, bool) {
	var parts []string
	i := 0
	for i < len(s) {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i == len(s) {
			break
		}
		if s[i] != '"' {
			return nil, false
		}
		i++
		var b strings.Builder
		closed := false
		for i < len(s) {
			c := s[i]
			if c == '"' {
				closed = true
				i++
				break
			}
			if c == '\\' && i+1 < len(s) {
				if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
					v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
					if v > 255 {
						return nil, false
					}
					b.WriteByte(byte(v))
					i += 4
					continue
				}
				b.WriteByte(s[i+1])
				i += 2
				continue
			}
			b.WriteByte(c)
			i++
		}
		if !closed {
			return nil, false
		}
		parts = append(parts, b.String())
	}
	return parts, len(parts) > 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// Key identifies a record for comparisons: name, type and data (TTL is not
// part of it).
type Key struct{ Name, Type, Data string }

// KeyOf returns the comparison key of a canonical record.
func KeyOf(rr libdns.RR) Key { return Key{rr.Name, rr.Type, rr.Data} }

// Sort orders records by name, type, data and TTL, for stable output.
func Sort(rrs []libdns.RR) {
	slices.SortFunc(rrs, func(a, b libdns.RR) int {
		return cmp.Or(
			cmp.Compare(a.Name, b.Name),
			cmp.Compare(a.Type, b.Type),
			cmp.Compare(a.Data, b.Data),
			cmp.Compare(a.TTL, b.TTL),
		)
	})
}

// Visible returns the canonical records of rrs that Records should report.
func Visible(rrs []libdns.RR, zone string) []libdns.RR {
	out := make([]libdns.RR, 0, len(rrs))
	for _, rr := range rrs {
		if Hidden(rr.Type) {
			continue
		}
		out = append(out, Canonical(rr, zone))
	}
	Sort(out)
	return out
}
