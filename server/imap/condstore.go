package imap

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailctl/mailctl/server/store"
)

// CONDSTORE and QRESYNC (RFC 7162)
//
// go-imap v2.0.0-beta.8's server has the types of CONDSTORE but none of
// its syntax: it rejects the MODSEQ fetch item, the CHANGEDSINCE and
// UNCHANGEDSINCE modifiers, SELECT parameters and STATUS HIGHESTMODSEQ,
// and knows nothing of QRESYNC. So conn reads these (rewriteCondStore):
// it takes the CONDSTORE syntax out of the command line, hands the rest
// to the library and notes what it took in condState.cmd, which the
// session's handlers, run next on the same goroutine, read. What the
// answers need beyond the library's (MODSEQ in FETCH responses,
// HIGHESTMODSEQ in STATUS, ENABLED CONDSTORE, the lines SELECT adds
// before its tagged OK) the session queues in condState under conn.wmu,
// and conn.Write puts into the library's lines (patchCondStore).
//
// The store keeps a ModSeq per message and per mailbox, and the UIDs
// expunged at each ModSeq (store.Vanished), which VANISHED (EARLIER)
// answers from; where those records do not reach back far enough, every
// UID the client asks about that is not in the mailbox is reported, as
// RFC 7162 section 3.2.5.2 allows.
//
// Where the RFC leaves a choice, the answers are Dovecot 2.3's, compared
// in condstore_dovecot_test.go. Not handled: CONDSTORE syntax in a
// command that also has a literal (a mailbox name sent as one), which
// the library answers BAD.

// condCaps are announced once logged in.
var condCaps = []string{"CONDSTORE", "QRESYNC"}

// condState is the CONDSTORE state of a connection.
type condState struct {
	condstore atomic.Bool // enabled (RFC 7162 section 3.1)
	qresync   atomic.Bool // enabled with ENABLE QRESYNC
	// listed: CONDSTORE was in an ENABLED response (enabling QRESYNC
	// enables it without listing it, as with Dovecot).
	listed bool

	// cmd is what rewriteCondStore took out of the current command; only
	// the goroutine that reads commands and runs them uses it.
	cmd condCmd

	// Write side, guarded by conn.wmu.
	modseqs   map[uint32]uint64 // MODSEQ for the next "* seq FETCH (" lines
	enabled   string            // added to the next "* ENABLED" line
	status    []string          // added to the next "* STATUS" lines' lists, in order
	beforeTag []byte            // written before the command's tagged response
	// shown is the highest MODSEQ the command's answer showed;
	// tagHighest, when not 0, goes into its tagged OK as
	// [HIGHESTMODSEQ n] (noteHighest).
	shown, tagHighest uint64
}

// condCmd is the CONDSTORE syntax of the current command.
type condCmd struct {
	tag            string
	justEnabled    bool   // the command enabled CONDSTORE
	fetchModSeq    bool   // FETCH MODSEQ, or CHANGEDSINCE
	changedSince   uint64 // FETCH (CHANGEDSINCE n): when hasChanged
	hasChanged     bool
	vanished       bool   // UID FETCH (... VANISHED)
	unchangedSince uint64 // STORE (UNCHANGEDSINCE n): when hasUnchanged
	hasUnchanged   bool
	statusModSeq   bool // STATUS (... HIGHESTMODSEQ)
	qresync        *qresyncParams
	// synced: the command brought the selected mailbox up to date with
	// the store (syncCmd), so the Poll at its end does not ask the store
	// again (session.Poll).
	synced bool
}

// qresyncParams are SELECT's (QRESYNC (...)) (RFC 7162 section 3.2.5).
type qresyncParams struct {
	uidValidity uint32
	modseq      uint64
	knownUIDs   goimap.SeqSet // nil: every UID
}

// enableCondStore marks CONDSTORE enabled by the current command.
func (c *conn) enableCondStore() {
	if !c.cs.condstore.Swap(true) {
		c.cs.cmd.justEnabled = true
	}
}

// startCondCmd forgets the CONDSTORE syntax of the last command when a
// new one starts (a line with a tag: not IDLE's DONE, read while the
// session runs).
func (c *conn) startCondCmd(line []byte) {
	tag, _, ok := bytes.Cut(line, []byte(" "))
	if ok && validTag(tag) {
		c.cs.cmd = condCmd{tag: string(tag)}
	}
}

// rewriteCondStore takes the CONDSTORE and QRESYNC syntax out of a
// command line (a whole line, without literal) for a logged-in session.
// It returns the line to hand to the library, or answered when it
// answered the command itself (a syntax error).
func (c *conn) rewriteCondStore(line []byte) (out []byte, answered bool, err error) {
	if c.ext.Load() == nil {
		return line, false, nil
	}
	text := strings.TrimRight(string(line), "\r\n")
	tag, rest, ok := strings.Cut(text, " ")
	if !ok || !validTag([]byte(tag)) {
		return line, false, nil
	}
	word, args, _ := strings.Cut(rest, " ")
	cmd := strings.ToUpper(word)
	prefix := tag + " " + word
	uid := false
	if cmd == "UID" {
		uid = true
		sub, subArgs, _ := strings.Cut(args, " ")
		cmd = strings.ToUpper(sub)
		prefix += " " + sub
		args = subArgs
	}
	var newArgs, bad string
	switch cmd {
	case "ENABLE":
		newArgs = c.condEnable(args)
	case "SELECT", "EXAMINE":
		if uid {
			return line, false, nil
		}
		newArgs, bad = c.condSelect(args)
	case "STATUS":
		if uid {
			return line, false, nil
		}
		newArgs, bad = c.condStatus(args)
	case "LIST":
		if uid {
			return line, false, nil
		}
		newArgs = c.condListStatus(args)
	case "FETCH":
		newArgs, bad = c.condFetch(args, uid)
	case "STORE":
		newArgs, bad = c.condStoreArgs(args)
	default:
		return line, false, nil
	}
	if bad != "" {
		c.cs.cmd = condCmd{}
		return nil, true, c.writeRaw(tag + " BAD " + bad + "\r\n")
	}
	if newArgs == args {
		return line, false, nil
	}
	if newArgs == "" {
		return []byte(prefix + "\r\n"), false, nil // ENABLE of ours only
	}
	return []byte(prefix + " " + newArgs + "\r\n"), false, nil
}

// condEnable takes CONDSTORE and QRESYNC out of ENABLE's arguments.
func (c *conn) condEnable(args string) string {
	var keep []string
	var added []string
	for _, w := range strings.Fields(args) {
		switch strings.ToUpper(w) {
		case "CONDSTORE":
			if !c.cs.listed {
				c.cs.listed = true
				added = append(added, "CONDSTORE")
			}
			c.enableCondStore()
		case "QRESYNC":
			// QRESYNC implies CONDSTORE (RFC 7162 section 3.2.3).
			c.enableCondStore()
			if !c.cs.qresync.Swap(true) {
				added = append(added, "QRESYNC")
			}
		default:
			keep = append(keep, w)
		}
	}
	if len(keep) == len(strings.Fields(args)) {
		return args
	}
	if len(added) > 0 {
		c.wmu.Lock()
		c.cs.enabled += " " + strings.Join(added, " ")
		c.wmu.Unlock()
	}
	return strings.Join(keep, " ")
}

// mailboxArg splits a mailbox name (atom or quoted string) off args.
func mailboxArg(args string) (name, rest string, ok bool) {
	if strings.HasPrefix(args, `"`) {
		for i := 1; i < len(args); i++ {
			switch args[i] {
			case '\\':
				i++
			case '"':
				return args[:i+1], args[i+1:], true
			}
		}
		return "", "", false
	}
	i := strings.IndexByte(args, ' ')
	if i < 0 {
		return args, "", true
	}
	return args[:i], args[i:], true
}

// condSelect reads SELECT's parameters (CONDSTORE) and (QRESYNC (...)).
func (c *conn) condSelect(args string) (string, string) {
	name, rest, ok := mailboxArg(args)
	if !ok || rest == "" {
		return args, ""
	}
	p := &keyParser{s: rest}
	if in, ok := p.paren(); !ok {
		return args, ""
	} else if strings.TrimSpace(in) == "" {
		return "", "Empty SELECT parameters"
	}
	p = &keyParser{s: rest}
	p.skipSpace()
	p.s = p.s[1:] // "("
	for {
		p.skipSpace()
		if strings.HasPrefix(p.s, ")") {
			p.s = p.s[1:]
			break
		}
		w, ok := p.token()
		if !ok {
			return "", "Invalid SELECT parameters"
		}
		switch strings.ToUpper(w) {
		case "CONDSTORE":
			c.enableCondStore()
		case "QRESYNC":
			if !c.cs.qresync.Load() {
				return "", "QRESYNC is not enabled"
			}
			q, err := parseQresync(p)
			if err != "" {
				return "", err
			}
			c.cs.cmd.qresync = q
		default:
			return "", "Unknown SELECT parameter " + w
		}
	}
	if strings.TrimSpace(p.s) != "" {
		return "", "Invalid SELECT parameters"
	}
	return name, ""
}

// paren returns the parenthesized list that comes next, with nested
// lists, without its outer parentheses.
func (p *keyParser) paren() (string, bool) {
	p.skipSpace()
	if !strings.HasPrefix(p.s, "(") {
		return "", false
	}
	depth := 0
	for i := 0; i < len(p.s); i++ {
		switch p.s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				in := p.s[1:i]
				p.s = p.s[i+1:]
				return in, true
			}
		case '"':
			for i++; i < len(p.s) && p.s[i] != '"'; i++ {
				if p.s[i] == '\\' {
					i++
				}
			}
		}
	}
	return "", false
}

// parseQresync reads "(uidvalidity modseq [known-uids [(seqs uids)]])".
func parseQresync(p *keyParser) (*qresyncParams, string) {
	in, ok := p.paren()
	if !ok {
		return nil, "Invalid QRESYNC parameters"
	}
	q := &keyParser{s: in}
	uv, ok1 := q.token()
	ms, ok2 := q.token()
	v, err1 := strconv.ParseUint(uv, 10, 32)
	m, err2 := strconv.ParseUint(ms, 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil || v == 0 || m == 0 {
		return nil, "Invalid QRESYNC parameters"
	}
	out := &qresyncParams{uidValidity: uint32(v), modseq: m}
	q.skipSpace()
	if q.s != "" && !strings.HasPrefix(q.s, "(") {
		known, _ := q.token()
		set, err := parseNumSet(known)
		if err != nil || strings.Contains(known, "*") {
			// "*" is not allowed (RFC 7162 section 7).
			return nil, "Invalid QRESYNC known UIDs"
		}
		out.knownUIDs = set
	}
	// The sequence match data only helps a server that keeps no
	// expunge records; its syntax is checked and it is not used.
	q.skipSpace()
	if q.s != "" {
		match, ok := q.paren()
		if !ok {
			return nil, "Invalid QRESYNC sequence match data"
		}
		f := strings.Fields(match)
		if len(f) != 2 {
			return nil, "Invalid QRESYNC sequence match data"
		}
		for _, s := range f {
			if _, err := parseNumSet(s); err != nil || strings.Contains(s, "*") {
				return nil, "Invalid QRESYNC sequence match data"
			}
		}
	}
	if strings.TrimSpace(q.s) != "" {
		return nil, "Invalid QRESYNC parameters"
	}
	return out, ""
}

// condStatus takes HIGHESTMODSEQ out of STATUS's items.
func (c *conn) condStatus(args string) (string, string) {
	name, rest, ok := mailboxArg(args)
	if !ok {
		return args, ""
	}
	p := &keyParser{s: rest}
	in, ok := p.paren()
	if !ok || strings.TrimSpace(p.s) != "" {
		return args, ""
	}
	var keep []string
	found := false
	for _, w := range strings.Fields(in) {
		if strings.EqualFold(w, "HIGHESTMODSEQ") {
			found = true
			continue
		}
		keep = append(keep, w)
	}
	if !found {
		return args, ""
	}
	c.cs.cmd.statusModSeq = true
	c.enableCondStore()
	return name + " (" + strings.Join(keep, " ") + ")", ""
}

// condFetch takes MODSEQ out of FETCH's items, and reads its modifiers
// (CHANGEDSINCE n [VANISHED]).
func (c *conn) condFetch(args string, uid bool) (string, string) {
	set, rest, ok := strings.Cut(args, " ")
	if !ok {
		return args, ""
	}
	p := &keyParser{s: rest}
	var items string
	p.skipSpace()
	if strings.HasPrefix(p.s, "(") {
		in, ok := p.paren()
		if !ok {
			return args, ""
		}
		var keep []string
		for _, w := range splitFetchItems(in) {
			if strings.EqualFold(w, "MODSEQ") {
				c.cs.cmd.fetchModSeq = true
				continue
			}
			keep = append(keep, w)
		}
		if len(keep) == 0 {
			keep = []string{"UID"}
		}
		items = "(" + strings.Join(keep, " ") + ")"
	} else {
		w, ok := p.token()
		if !ok {
			return args, ""
		}
		if strings.EqualFold(w, "MODSEQ") {
			c.cs.cmd.fetchModSeq = true
			w = "UID"
		}
		items = w
		// An item with a section ("BODY[HEADER.FIELDS (A B)]"): the
		// library reads it; no modifiers are looked for after it.
		if strings.ContainsAny(p.s, "[]") {
			return args, ""
		}
	}
	p.skipSpace()
	if p.s != "" {
		mods, ok := p.paren()
		if !ok || strings.TrimSpace(p.s) != "" {
			return args, ""
		}
		f := strings.Fields(mods)
		for i := 0; i < len(f); i++ {
			switch strings.ToUpper(f[i]) {
			case "CHANGEDSINCE":
				if i+1 == len(f) {
					return "", "CHANGEDSINCE needs a mod-sequence"
				}
				i++
				n, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil || n == 0 {
					return "", "Invalid CHANGEDSINCE mod-sequence"
				}
				c.cs.cmd.changedSince, c.cs.cmd.hasChanged = n, true
				c.cs.cmd.fetchModSeq = true
			case "VANISHED":
				c.cs.cmd.vanished = true
			default:
				return "", "Unknown FETCH modifier " + f[i]
			}
		}
		if c.cs.cmd.vanished && (!uid || !c.cs.qresync.Load() || !c.cs.cmd.hasChanged) {
			// RFC 7162 section 3.2.6.
			return "", "VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC enabled"
		}
	}
	if !c.cs.cmd.fetchModSeq {
		return args, ""
	}
	c.enableCondStore()
	return set + " " + items, ""
}

// splitFetchItems splits a FETCH item list at its spaces outside
// brackets and parentheses.
func splitFetchItems(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[', '(', '<':
			depth++
		case ']', ')', '>':
			depth--
		case ' ':
			if depth == 0 {
				if i > start {
					out = append(out, s[start:i])
				}
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// condStoreArgs takes (UNCHANGEDSINCE n) out of STORE's arguments.
func (c *conn) condStoreArgs(args string) (string, string) {
	set, rest, ok := strings.Cut(args, " ")
	if !ok || !strings.HasPrefix(rest, "(") {
		return args, ""
	}
	p := &keyParser{s: rest}
	mods, ok := p.paren()
	if !ok {
		return args, ""
	}
	f := strings.Fields(mods)
	if len(f) != 2 || !strings.EqualFold(f[0], "UNCHANGEDSINCE") {
		return "", "Unknown STORE modifier"
	}
	n, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return "", "Invalid UNCHANGEDSINCE mod-sequence"
	}
	c.cs.cmd.unchangedSince, c.cs.cmd.hasUnchanged = n, true
	c.enableCondStore()
	return set + " " + strings.TrimLeft(p.s, " "), ""
}

// queueModSeq has MODSEQ (modseq) added to the next FETCH response of
// message seq.
func (c *conn) queueModSeq(seq uint32, modseq uint64) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.cs.modseqs == nil {
		c.cs.modseqs = map[uint32]uint64{}
	}
	c.cs.modseqs[seq] = modseq
	c.cs.shown = max(c.cs.shown, modseq)
}

// queueBeforeTag has b written before the current command's tagged
// response.
func (c *conn) queueBeforeTag(b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.cs.beforeTag = append(c.cs.beforeTag, b...)
}

var fetchWord = []byte(" FETCH (")

// patchCondStore adjusts a whole response line of the library (not the
// continuation of one after a literal), and returns what goes before it.
// wmu is held.
func (c *conn) patchCondStore(line []byte) (before, out []byte) {
	cs := &c.cs
	if len(line) < 2 {
		return nil, line
	}
	if line[0] != '*' && line[0] != '+' {
		// The tagged response ends the command.
		before, cs.beforeTag = cs.beforeTag, nil
		cs.status = nil
		clear(cs.modseqs)
		if cs.tagHighest != 0 {
			line = tagHighestModSeq(line, cs.tagHighest, &before)
		}
		cs.tagHighest, cs.shown = 0, 0
		return before, line
	}
	return nil, cs.patchLine(line)
}

func (cs *condState) patchLine(line []byte) []byte {
	switch {
	case len(cs.modseqs) > 0 && bytes.HasPrefix(line, []byte("* ")):
		i := bytes.Index(line, fetchWord)
		if i < 3 {
			return line
		}
		seq, err := strconv.ParseUint(string(line[2:i]), 10, 32)
		if err != nil {
			return line
		}
		ms, ok := cs.modseqs[uint32(seq)]
		if !ok {
			return line
		}
		delete(cs.modseqs, uint32(seq))
		at := i + len(fetchWord)
		out := make([]byte, 0, len(line)+32)
		out = append(out, line[:at]...)
		out = append(out, "MODSEQ ("...)
		out = strconv.AppendUint(out, ms, 10)
		out = append(out, ')')
		if line[at] != ')' {
			out = append(out, ' ')
		}
		return append(out, line[at:]...)
	case cs.enabled != "" && bytes.HasPrefix(line, []byte("* ENABLED")):
		body := bytes.TrimRight(line, "\r\n")
		out := append(append([]byte(nil), body...), cs.enabled...)
		cs.enabled = ""
		return append(out, "\r\n"...)
	case len(cs.status) > 0 && bytes.HasPrefix(line, []byte("* STATUS ")):
		body := bytes.TrimRight(line, "\r\n")
		if !bytes.HasSuffix(body, []byte(")")) {
			return line
		}
		out := append([]byte(nil), body[:len(body)-1]...)
		if !bytes.HasSuffix(out, []byte("(")) {
			out = append(out, ' ')
		}
		out = append(out, cs.status[0]...)
		cs.status = cs.status[1:]
		return append(out, ")\r\n"...)
	}
	return line
}

// uidRanges are ascending disjoint ranges [lo, hi] of UIDs.
type uidRanges [][2]uint32

// normRanges turns a number set ("*" as 0, which is star) into ascending
// disjoint ranges, with nothing above star.
func normRanges(set goimap.SeqSet, star uint32) uidRanges {
	var rs uidRanges
	for _, r := range set {
		a, b := r.Start, r.Stop
		if a == 0 {
			a = star
		}
		if b == 0 {
			b = star
		}
		if a > b {
			a, b = b, a
		}
		if a == 0 || a > star {
			continue
		}
		rs = append(rs, [2]uint32{a, min(b, star)})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i][0] < rs[j][0] })
	var out uidRanges
	for _, r := range rs {
		if n := len(out); n > 0 && uint64(r[0]) <= uint64(out[n-1][1])+1 {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}

// intersect returns the UIDs in both a and b.
func (a uidRanges) intersect(b uidRanges) uidRanges {
	var out uidRanges
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		lo, hi := max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
		if lo <= hi {
			out = append(out, [2]uint32{lo, hi})
		}
		if a[i][1] < b[j][1] {
			i++
		} else {
			j++
		}
	}
	return out
}

// without returns the UIDs of a that are not in msgs (UID order).
func (a uidRanges) without(msgs []store.Message) uidRanges {
	var out uidRanges
	k := 0
	for _, r := range a {
		lo := uint64(r[0])
		for k < len(msgs) && msgs[k].UID < r[0] {
			k++
		}
		for ; k < len(msgs) && msgs[k].UID <= r[1]; k++ {
			if u := uint64(msgs[k].UID); u > lo {
				out = append(out, [2]uint32{uint32(lo), uint32(u - 1)})
			}
			lo = uint64(msgs[k].UID) + 1
		}
		if lo <= uint64(r[1]) {
			out = append(out, [2]uint32{uint32(lo), r[1]})
		}
	}
	return out
}

func (a uidRanges) appendTo(b []byte) []byte {
	for i, r := range a {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(r[0]), 10)
		if r[1] != r[0] {
			b = append(b, ':')
			b = strconv.AppendUint(b, uint64(r[1]), 10)
		}
	}
	return b
}

// vanishedSince returns the UIDs of cand that left the mailbox after
// modseq: from the store's records, or, where they do not go back that
// far, every UID of cand not in msgs (the mailbox now, UID order).
func (s *session) vanishedSince(ctx context.Context, id uint64, modseq uint64, cand uidRanges, msgs []store.Message) (uidRanges, error) {
	recorded, complete, err := s.srv.st.Vanished(ctx, s.user, id, modseq)
	if err != nil {
		return nil, err
	}
	if complete {
		return uidRanges(recorded).intersect(cand).without(msgs), nil
	}
	return cand.without(msgs), nil
}

// selectCondStore adds to SELECT's answer HIGHESTMODSEQ and, for
// SELECT (QRESYNC ...), what changed since the client's state: VANISHED
// (EARLIER) and FETCH (UID FLAGS MODSEQ) (RFC 7162 sections 3.1.2.1 and
// 3.2.5).
func (s *session) selectCondStore(v *view, mb store.Mailbox) error {
	var b []byte
	b = append(b, "* OK [HIGHESTMODSEQ "...)
	b = strconv.AppendUint(b, v.modseq, 10)
	b = append(b, "] Highest\r\n"...)
	q := s.conn.cs.cmd.qresync
	if q != nil && q.uidValidity == mb.UIDValidity {
		star := mb.UIDNext - 1
		cand := uidRanges{{1, star}}
		if q.knownUIDs != nil {
			cand = normRanges(q.knownUIDs, star)
		}
		if star == 0 {
			cand = nil
		}
		gone, err := s.vanishedSince(s.ctx, v.sm.key.id, q.modseq, cand, v.msgs)
		if err != nil {
			return err
		}
		if len(gone) > 0 {
			b = append(b, "* VANISHED (EARLIER) "...)
			b = gone.appendTo(b)
			b = append(b, "\r\n"...)
		}
		// Changes to the messages the client knows (its known UIDs, by
		// default all): it learns of newer ones from EXISTS and UIDNEXT,
		// as with Dovecot.
		k := 0
		for i := range v.msgs {
			m := &v.msgs[i]
			if q.knownUIDs != nil {
				for k < len(cand) && cand[k][1] < m.UID {
					k++
				}
				if k == len(cand) || m.UID < cand[k][0] {
					continue
				}
			}
			if m.ModSeq <= q.modseq {
				continue
			}
			b = appendFlagsFetch(b, uint32(i)+1, m.UID, v.flags(m), m.ModSeq)
		}
	}
	s.conn.queueBeforeTag(b)
	return nil
}

// appendFlagsFetch appends "* seq FETCH (UID uid FLAGS (...) MODSEQ (m))".
func appendFlagsFetch(b []byte, seq, uid uint32, flags []goimap.Flag, modseq uint64) []byte {
	b = append(b, "* "...)
	b = strconv.AppendUint(b, uint64(seq), 10)
	b = append(b, " FETCH (UID "...)
	b = strconv.AppendUint(b, uint64(uid), 10)
	b = append(b, " FLAGS ("...)
	for i, f := range flags {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, f...)
	}
	b = append(b, ") MODSEQ ("...)
	b = strconv.AppendUint(b, modseq, 10)
	return append(b, "))\r\n"...)
}

// fetchVanished writes UID FETCH's VANISHED (EARLIER) for the UIDs of
// numSet expunged since CHANGEDSINCE (RFC 7162 section 3.2.6).
func (s *session) fetchVanished(numSet goimap.NumSet, since uint64) error {
	v := s.view
	uids, ok := numSet.(goimap.UIDSet)
	if !ok {
		return nil
	}
	v.sm.mu.Lock()
	msgs, star := v.sm.msgs, v.sm.mb.UIDNext-1
	v.sm.mu.Unlock()
	if star == 0 {
		return nil
	}
	set := make(goimap.SeqSet, len(uids))
	for i, r := range uids {
		set[i] = goimap.SeqRange{Start: uint32(r.Start), Stop: uint32(r.Stop)}
	}
	gone, err := s.vanishedSince(s.ctx, v.sm.key.id, since, normRanges(set, star), msgs)
	if err != nil || len(gone) == 0 {
		return err
	}
	b := gone.appendTo([]byte("* VANISHED (EARLIER) "))
	return s.conn.writeResponses(append(b, "\r\n"...))
}

// modifiedError is STORE's tagged OK [MODIFIED set] for the messages that
// failed UNCHANGEDSINCE (RFC 7162 section 3.1.3).
func modifiedError(nums []uint32) error {
	slices := append([]uint32(nil), nums...)
	sort.Slice(slices, func(i, j int) bool { return slices[i] < slices[j] })
	var rs uidRanges
	for _, n := range slices {
		if k := len(rs); k > 0 && rs[k-1][1]+1 == n {
			rs[k-1][1] = n
			continue
		}
		rs = append(rs, [2]uint32{n, n})
	}
	code := rs.appendTo([]byte("MODIFIED "))
	return &goimap.Error{Type: goimap.StatusResponseTypeOK, Code: goimap.ResponseCode(code), Text: "Conditional STORE failed"}
}

// highestModSeqLine is the untagged OK sent when a command other than
// SELECT enables CONDSTORE while a mailbox is selected.
func highestModSeqLine(modseq uint64) []byte {
	return []byte(fmt.Sprintf("* OK [HIGHESTMODSEQ %d] Highest\r\n", modseq))
}

// changedSince keeps the items whose ModSeq is above since (FETCH
// CHANGEDSINCE).
func changedSince(items []item, since uint64) []item {
	out := items[:0:0]
	for _, it := range items {
		if it.msg.ModSeq > since {
			out = append(out, it)
		}
	}
	return out
}

// storeModSeqs writes "* seq FETCH (UID uid MODSEQ (m))" for the messages
// a STORE .SILENT changed.
func storeModSeqs(c *conn, w *imapserver.FetchWriter, items []item, updated []store.Message) error {
	before := make(map[uint32]uint64, len(items))
	seqs := make(map[uint32]uint32, len(items))
	for _, it := range items {
		before[it.msg.UID] = it.msg.ModSeq
		seqs[it.msg.UID] = it.clientSeq
	}
	for _, m := range updated {
		if m.ModSeq <= before[m.UID] {
			continue // unchanged
		}
		c.queueModSeq(seqs[m.UID], m.ModSeq)
		rw := w.CreateMessage(seqs[m.UID])
		rw.WriteUID(goimap.UID(m.UID))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// storeModified returns STORE's OK [MODIFIED ...] when some messages
// failed UNCHANGEDSINCE: their UIDs for UID STORE, else their sequence
// numbers.
func storeModified(numSet goimap.NumSet, items []item, modified []uint32) error {
	if len(modified) == 0 {
		return nil
	}
	if _, ok := numSet.(goimap.UIDSet); ok {
		return modifiedError(modified)
	}
	seqs := make(map[uint32]uint32, len(items))
	for _, it := range items {
		seqs[it.msg.UID] = it.clientSeq
	}
	nums := make([]uint32, 0, len(modified))
	for _, uid := range modified {
		nums = append(nums, seqs[uid])
	}
	return modifiedError(nums)
}

// vanishedLine is "* VANISHED uids" for the messages of msgs at the
// sequence numbers seqs (ascending).
func vanishedLine(msgs []store.Message, seqs []uint32) []byte {
	var rs uidRanges
	for _, seq := range seqs {
		uid := msgs[seq-1].UID
		if k := len(rs); k > 0 && rs[k-1][1]+1 == uid {
			rs[k-1][1] = uid
			continue
		}
		rs = append(rs, [2]uint32{uid, uid})
	}
	return append(rs.appendTo([]byte("* VANISHED ")), "\r\n"...)
}

// mentionsModSeq reports whether SEARCH arguments hold the MODSEQ key
// (which the library does not parse): then extCommand answers.
func mentionsModSeq(args string) bool {
	// ASCII only: strings.ToUpper changes the length of invalid UTF-8.
	ub := []byte(args)
	for i, c := range ub {
		if 'a' <= c && c <= 'z' {
			ub[i] = c - 'a' + 'A'
		}
	}
	up := string(ub)
	for i := strings.Index(up, "MODSEQ"); i >= 0; {
		end := i + len("MODSEQ")
		before := i == 0 || up[i-1] == ' ' || up[i-1] == '('
		after := end == len(up) || up[end] == ' '
		if before && after && !insideQuotes(args, i) {
			return true
		}
		j := strings.Index(up[end:], "MODSEQ")
		if j < 0 {
			break
		}
		i = end + j
	}
	return false
}

// insideQuotes reports whether s[i] is within a quoted string.
func insideQuotes(s string, i int) bool {
	in := false
	for k := 0; k < i; k++ {
		switch s[k] {
		case '\\':
			if in {
				k++
			}
		case '"':
			in = !in
		}
	}
	return in
}

// modseqKey reads the arguments of the MODSEQ search key: an optional
// entry name and type (RFC 7162 section 3.1.5; every flag shares the
// message's ModSeq here, so they do not change the answer) and the
// mod-sequence.
func (p *keyParser) modseqKey() (uint64, error) {
	v, ok := p.token()
	if !ok {
		return 0, errBad("missing argument of MODSEQ")
	}
	if n, err := strconv.ParseUint(v, 10, 64); err == nil {
		return n, nil
	}
	typ, ok := p.token()
	if !ok {
		return 0, errBad("missing entry type of MODSEQ")
	}
	switch strings.ToLower(typ) {
	case "priv", "shared", "all":
	default:
		return 0, errBad("invalid entry type of MODSEQ " + typ)
	}
	v, ok = p.token()
	n, err := strconv.ParseUint(v, 10, 64)
	if !ok || err != nil {
		return 0, errBad("invalid mod-sequence of MODSEQ")
	}
	return n, nil
}

// searchModSeqCommand answers SEARCH and UID SEARCH with the MODSEQ key:
// the matches and the highest ModSeq among them (RFC 7162 section
// 3.1.5), in a SEARCH response, or an ESEARCH one for SEARCH RETURN
// (RFC 4731).
func (s *session) searchModSeqCommand(tag string, uid bool, args string) ([]byte, error) {
	s.conn.enableCondStore()
	p := &keyParser{s: args}
	var ret []string
	if p.word("RETURN") {
		var err error
		if ret, err = p.list(); err != nil {
			return nil, err
		}
		if len(ret) == 0 {
			ret = []string{"ALL"}
		}
	}
	if p.word("CHARSET") {
		cs, ok := p.token()
		if !ok {
			return nil, errBad("missing charset")
		}
		switch strings.ToUpper(cs) {
		case "UTF-8", "US-ASCII":
		default:
			return nil, &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: "BADCHARSET (UTF-8 US-ASCII)", Text: "Unsupported charset"}
		}
	}
	criteria, err := p.searchKeys()
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, r := range ret {
		switch r = strings.ToUpper(r); r {
		case "MIN", "MAX", "ALL", "COUNT", "SAVE":
			want[r] = true
		default:
			return nil, errBad("unknown RETURN option " + r)
		}
	}
	if err := s.syncCmd(s.view.sm); err != nil {
		return nil, s.imapError(err)
	}
	var nums []uint32
	var saved goimap.UIDSet
	var highest uint64
	if err := s.eachMatch(criteria, func(cseq uint32, m *store.Message) {
		if want["SAVE"] {
			saved = appendUID(saved, goimap.UID(m.UID))
		}
		switch {
		case uid:
			nums = append(nums, m.UID)
		case cseq != 0:
			nums = append(nums, cseq)
		default:
			return
		}
		highest = max(highest, m.ModSeq)
	}); err != nil {
		return nil, err
	}
	if want["SAVE"] {
		s.view.searchRes = saved
	}
	if ret == nil {
		b := []byte("* SEARCH")
		for _, n := range nums {
			b = append(b, ' ')
			b = strconv.AppendUint(b, uint64(n), 10)
		}
		if len(nums) > 0 {
			b = append(b, " (MODSEQ "...)
			b = strconv.AppendUint(b, highest, 10)
			b = append(b, ')')
		}
		return append(b, "\r\n"...), nil
	}
	if len(want) == 1 && want["SAVE"] {
		return nil, nil
	}
	b := []byte(`* ESEARCH (TAG "` + tag + `")`)
	if uid {
		b = append(b, " UID"...)
	}
	if len(nums) > 0 {
		if want["MIN"] {
			b = append(b, " MIN "...)
			b = strconv.AppendUint(b, uint64(nums[0]), 10)
		}
		if want["MAX"] {
			b = append(b, " MAX "...)
			b = strconv.AppendUint(b, uint64(nums[len(nums)-1]), 10)
		}
		if want["ALL"] {
			b = append(b, " ALL "...)
			b = appendOrderedSet(b, nums)
		}
	}
	if want["COUNT"] {
		b = append(b, " COUNT "...)
		b = strconv.AppendInt(b, int64(len(nums)), 10)
	}
	if len(nums) > 0 {
		b = append(b, " MODSEQ "...)
		b = strconv.AppendUint(b, highest, 10)
	}
	return append(b, "\r\n"...), nil
}

// noteHighest tells a QRESYNC client the HIGHESTMODSEQ its state is at,
// in the command's tagged OK (RFC 7162 section 3.2), as Dovecot does:
//
//   - While it still sees messages that other sessions expunged (no
//     EXPUNGE or VANISHED may be sent during FETCH, STORE and SEARCH, nor
//     after a FETCH that fails with EXPUNGEISSUED), MODSEQ values shown
//     may be above the expunges' mod-sequences: a client that saved them
//     and reconnected would never learn of those expunges. So when the
//     command showed one above the state the client fully knows, it
//     gets that lower state.
//   - Else, when the mailbox moved on (VANISHED, EXISTS) beyond what the
//     client was told (HIGHESTMODSEQ, MODSEQ values), it gets the new
//     HIGHESTMODSEQ.
func (s *session) noteHighest() error {
	v := s.view
	c := s.conn
	if v == nil || !c.cs.qresync.Load() {
		return nil
	}
	pending := v.ghosts > 0
	if !pending {
		// Expunges the view has not even taken as ghosts yet.
		v.sm.mu.Lock()
		_, gone := v.currentLocked()
		v.sm.mu.Unlock()
		pending = slices.Contains(gone, true)
	}
	var now []byte
	c.wmu.Lock()
	v.told = max(v.told, c.cs.shown)
	switch {
	case pending && c.cs.shown > v.lastFull:
		c.cs.tagHighest, v.told = v.lastFull, v.lastFull
	case !pending && v.modseq > v.told:
		c.cs.tagHighest, v.told = v.modseq, v.modseq
	}
	if !pending {
		v.lastFull = v.modseq
	}
	if s.idling && c.cs.tagHighest != 0 {
		// No tagged response until DONE: now.
		now = highestModSeqLine(c.cs.tagHighest)
		c.cs.tagHighest, c.cs.shown = 0, 0
	}
	c.wmu.Unlock()
	if now != nil {
		return c.writeResponses(now)
	}
	return nil
}

// tagHighestModSeq puts [HIGHESTMODSEQ n] into a tagged OK that has no
// response code, else in an untagged OK appended to before.
func tagHighestModSeq(line []byte, n uint64, before *[]byte) []byte {
	tag, rest, _ := bytes.Cut(line, []byte(" "))
	if bytes.HasPrefix(rest, []byte("OK ")) && !bytes.HasPrefix(rest, []byte("OK [")) {
		out := append([]byte(nil), tag...)
		out = append(out, " OK [HIGHESTMODSEQ "...)
		out = strconv.AppendUint(out, n, 10)
		out = append(out, "] "...)
		return append(out, rest[len("OK "):]...)
	}
	*before = append(*before, highestModSeqLine(n)...)
	return line
}

// condListStatus takes HIGHESTMODSEQ out of LIST's RETURN (STATUS (...))
// (RFC 5819).
func (c *conn) condListStatus(args string) string {
	ub := []byte(args)
	for i, ch := range ub {
		if 'a' <= ch && ch <= 'z' {
			ub[i] = ch - 'a' + 'A'
		}
	}
	up := string(ub)
	r := strings.LastIndex(up, " RETURN (")
	if r < 0 || insideQuotes(args, r) {
		return args
	}
	k := strings.Index(up[r:], "STATUS (")
	if k < 0 {
		return args
	}
	open := r + k + len("STATUS ")
	end := strings.IndexByte(args[open:], ')')
	if end < 0 {
		return args
	}
	end += open
	var keep []string
	found := false
	for _, w := range strings.Fields(args[open+1 : end]) {
		if strings.EqualFold(w, "HIGHESTMODSEQ") {
			found = true
			continue
		}
		keep = append(keep, w)
	}
	if !found {
		return args
	}
	c.cs.cmd.statusModSeq = true
	c.enableCondStore()
	return args[:open] + "(" + strings.Join(keep, " ") + args[end:]
}

// queueStatusModSeq has HIGHESTMODSEQ added to the next STATUS response.
func (c *conn) queueStatusModSeq(modseq uint64) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.cs.status = append(c.cs.status, "HIGHESTMODSEQ "+strconv.FormatUint(modseq, 10))
}
