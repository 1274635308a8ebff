package imap

import (
	"encoding/binary"
	"strings"
	"sync"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/mail"
)

// The ENVELOPE of a message (RFC 9051 section 7.5.2) is computed once, at
// delivery, and kept in the store beside the header (store.SetHeaderSummary),
// in this encoding, so that FETCH ENVELOPE parses nothing:
//
//	byte     version (2; 1 is the same layout)
//	byte     1 if there is a date, then: varint Unix seconds,
//	         varint zone offset in seconds
//	string   subject, message-id
//	list     in-reply-to (uvarint count, strings)
//	6 lists  from, sender, reply-to, to, cc, bcc (uvarint count, then
//	         name, mailbox, host of each)
//
// where a string is a uvarint length and its bytes. Anything that does not
// decode is recomputed from the header. Version 2 has address groups
// (RFC 9051 group markers), which version 1 flattened. Version 1
// summaries are still read as they are: recomputing them would parse the
// header of every message delivered before, at every FETCH ENVELOPE,
// for the few that have a group.
const envelopeVersion = 2

// summarizeHeader is the store's header summary: the encoded ENVELOPE.
func summarizeHeader(hdr []byte) []byte { return encodeEnvelope(envelopeBytes(hdr)) }

func encodeEnvelope(env *goimap.Envelope) []byte {
	b := make([]byte, 0, 256)
	b = append(b, envelopeVersion)
	if env.Date.IsZero() {
		b = append(b, 0)
	} else {
		_, off := env.Date.Zone()
		b = append(b, 1)
		b = binary.AppendVarint(b, env.Date.Unix())
		b = binary.AppendVarint(b, int64(off))
	}
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	str(env.Subject)
	str(env.MessageID)
	b = binary.AppendUvarint(b, uint64(len(env.InReplyTo)))
	for _, s := range env.InReplyTo {
		str(s)
	}
	for _, list := range [][]goimap.Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc, env.Bcc} {
		b = binary.AppendUvarint(b, uint64(len(list)))
		for _, a := range list {
			str(a.Name)
			str(a.Mailbox)
			str(a.Host)
		}
	}
	return b
}

// decodeEnvelope decodes what encodeEnvelope made; ok is false for
// anything else.
func decodeEnvelope(b []byte) (env *goimap.Envelope, ok bool) {
	if len(b) < 2 || (b[0] != envelopeVersion && b[0] != 1) {
		return nil, false
	}
	hasDate := b[1]
	b = b[2:]
	bad := false
	varint := func() int64 {
		v, n := binary.Varint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return v
	}
	count := func() int {
		v, n := binary.Uvarint(b)
		if n <= 0 || v > uint64(len(b)) {
			bad = true
			return 0
		}
		b = b[n:]
		return int(v)
	}
	str := func() string {
		n := count()
		if bad || n > len(b) {
			bad = true
			return ""
		}
		s := string(b[:n])
		b = b[n:]
		return s
	}
	env = &goimap.Envelope{}
	switch hasDate {
	case 0:
	case 1:
		sec, off := varint(), varint()
		if off < -24*3600 || off > 24*3600 {
			return nil, false
		}
		env.Date = time.Unix(sec, 0).In(fixedZone(int(off)))
	default:
		return nil, false
	}
	env.Subject = str()
	env.MessageID = str()
	if n := count(); n > 0 {
		env.InReplyTo = make([]string, n)
		for i := range env.InReplyTo {
			env.InReplyTo[i] = str()
		}
	}
	for _, list := range []*[]goimap.Address{&env.From, &env.Sender, &env.ReplyTo, &env.To, &env.Cc, &env.Bcc} {
		n := count()
		if n == 0 {
			continue
		}
		*list = make([]goimap.Address, n)
		for i := range *list {
			(*list)[i] = goimap.Address{Name: str(), Mailbox: str(), Host: str()}
		}
	}
	if bad || len(b) != 0 {
		return nil, false
	}
	return env, true
}

// zones holds the *time.Location of the offsets that decodeEnvelope met,
// whole quarters of an hour (every zone in use, at most 193 of them):
// time.FixedZone makes a new one (three allocations) at every call.
var zones sync.Map // int -> *time.Location

func fixedZone(off int) *time.Location {
	if off%900 != 0 {
		return time.FixedZone("", off)
	}
	if z, ok := zones.Load(off); ok {
		return z.(*time.Location)
	}
	z, _ := zones.LoadOrStore(off, time.FixedZone("", off))
	return z.(*time.Location)
}

// parseAddresses returns the addresses of an address field (From, To,
// ...) for an ENVELOPE. go-message (net/mail) flattens groups and gives
// up on a whole field at the first address it cannot read, such as one
// with comments inside its addr-spec (`user (c)@ (c) example.org`, valid
// RFC 5322). So the field is split here at its groups, and each list is
// parsed by go-message, again without its comments when that fails. A
// group ("undisclosed-recipients:;") is written as RFC 9051 section 7.5.2
// says: a start marker whose mailbox is the group's name (host NIL), its
// members, and an end marker (mailbox and host NIL).
func parseAddresses(v string) []goimap.Address {
	var out []goimap.Address
	for _, seg := range splitGroups(v) {
		if seg.group {
			out = append(out, goimap.Address{Mailbox: groupName(seg.name)})
		}
		out = appendAddrs(out, seg.list)
		if seg.group {
			out = append(out, goimap.Address{})
		}
	}
	return out
}

// addrSegment is a part of an address field: a list of addresses, or a
// group with its name and member list.
type addrSegment struct {
	group bool
	name  string
	list  string
}

// splitGroups splits an address field at its groups: "display-name:"
// through ";" outside quoted strings, comments and angle brackets.
func splitGroups(v string) []addrSegment {
	var segs []addrSegment
	var quoted, escaped, inGroup bool
	comment, angle := 0, 0
	plainStart, itemStart, groupStart := 0, 0, 0
	var name string
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\' && (quoted || comment > 0):
			escaped = true
		case quoted:
			quoted = c != '"'
		case c == '(':
			comment++
		case comment > 0:
			if c == ')' {
				comment--
			}
		case c == '"':
			quoted = true
		case c == '<':
			angle++
		case c == '>' && angle > 0:
			angle--
		case angle > 0:
		case c == ',':
			itemStart = i + 1
		case c == ':' && !inGroup:
			if s := v[plainStart:itemStart]; strings.Trim(s, " \t,") != "" {
				segs = append(segs, addrSegment{list: s})
			}
			name, inGroup, groupStart = v[itemStart:i], true, i+1
		case c == ';' && inGroup:
			segs = append(segs, addrSegment{group: true, name: name, list: v[groupStart:i]})
			inGroup, plainStart, itemStart = false, i+1, i+1
		}
	}
	if inGroup {
		segs = append(segs, addrSegment{group: true, name: name, list: v[groupStart:]})
	} else if s := v[plainStart:]; strings.Trim(s, " \t,") != "" {
		segs = append(segs, addrSegment{list: s})
	}
	return segs
}

// groupName is the display name of a group as its start marker carries
// it: the phrase as written (encoded words stay encoded: the mailbox
// field is not decoded by clients), without comments and quotes.
func groupName(s string) string {
	s = strings.Join(strings.Fields(stripComments(s)), " ")
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = strings.ReplaceAll(strings.ReplaceAll(s[1:len(s)-1], `\"`, `"`), `\\`, `\`)
	}
	return s
}

// appendAddrs appends the addresses of list to out.
func appendAddrs(out []goimap.Address, list string) []goimap.Address {
	if strings.Trim(list, " \t,") == "" {
		return out
	}
	addrs, err := mail.ParseAddressList(list)
	if err != nil {
		addrs, _ = mail.ParseAddressList(cleanAddrSpecs(list))
	}
	for _, a := range addrs {
		i := strings.LastIndexByte(a.Address, '@')
		if i < 0 {
			continue
		}
		out = append(out, goimap.Address{Name: a.Name, Mailbox: a.Address[:i], Host: a.Address[i+1:]})
	}
	return out
}

// stripComments removes the comments (RFC 5322 section 3.2.2) of s,
// outside quoted strings, each replaced by a space.
func stripComments(s string) string {
	if !strings.Contains(s, "(") {
		return s
	}
	var b strings.Builder
	quoted, escaped, depth := false, false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			escaped = false
			if depth == 0 {
				b.WriteByte(c)
			}
			continue
		case c == '\\' && (quoted || depth > 0):
			escaped = true
		case depth > 0:
			switch c {
			case '(':
				depth++
			case ')':
				depth--
				if depth == 0 {
					b.WriteByte(' ')
				}
			}
			continue
		case c == '"':
			quoted = !quoted
		case c == '(' && !quoted:
			depth++
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// cleanAddrSpecs rewrites an address list that net/mail cannot read into
// one it reads: comments removed, and the folding white space that RFC
// 5322's obsolete syntax allows around the "@" of an addr-spec taken out
// (outside quoted strings).
func cleanAddrSpecs(s string) string {
	s = stripComments(s)
	var b strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' && (i == 0 || s[i-1] != '\\') {
			quoted = !quoted
		}
		if !quoted && (c == ' ' || c == '\t') {
			// Drop the run of blanks next to "@".
			j := i
			for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
				j++
			}
			prev := byte(0)
			if b.Len() > 0 {
				prev = b.String()[b.Len()-1]
			}
			if prev == '@' || (j < len(s) && s[j] == '@') {
				i = j - 1
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}
