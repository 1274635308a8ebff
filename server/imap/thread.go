package imap

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
)

// THREAD (RFC 5256 section 3): ORDEREDSUBJECT and REFERENCES.

// threadNode is a message of a thread, or a dummy (info nil): a message
// that others refer to but is not among those searched.
type threadNode struct {
	info     *sortInfo
	parent   *threadNode
	children []*threadNode
}

func (s *session) threadCommand(uid bool, args string) ([]byte, error) {
	p := &keyParser{s: args}
	alg, ok := p.token()
	if !ok {
		return nil, errBad("missing threading algorithm")
	}
	alg = strings.ToUpper(alg)
	if alg != "ORDEREDSUBJECT" && alg != "REFERENCES" {
		return nil, errBad("unknown threading algorithm " + alg)
	}
	infos, err := s.selectForSort(p, true, alg == "REFERENCES")
	if err != nil {
		return nil, err
	}
	if !uid {
		// Messages not yet announced to the client have no number.
		infos = slices.DeleteFunc(infos, func(in *sortInfo) bool { return in.cseq == 0 })
	}
	var roots []*threadNode
	if alg == "ORDEREDSUBJECT" {
		roots = orderedSubject(infos)
	} else {
		roots = references(infos)
	}
	b := []byte("* THREAD")
	if len(roots) > 0 {
		b = append(b, ' ')
	}
	for _, r := range roots {
		b = append(b, '(')
		b = appendThread(b, r, uid)
		b = append(b, ')')
	}
	return append(b, "\r\n"...), nil
}

// appendThread writes a node and its descendants as RFC 5256 section 4
// does: a message followed by its only child, or by its children each in
// parentheses; a dummy as its children each in parentheses.
func appendThread(b []byte, n *threadNode, uid bool) []byte {
	if n.info != nil {
		num := n.info.cseq
		if uid {
			num = n.info.m.UID
		}
		b = strconv.AppendUint(b, uint64(num), 10)
		if len(n.children) == 1 {
			return appendThread(append(b, ' '), n.children[0], uid)
		}
		if len(n.children) > 1 {
			b = append(b, ' ')
		}
	}
	for _, c := range n.children {
		b = append(b, '(')
		b = appendThread(b, c, uid)
		b = append(b, ')')
	}
	return b
}

// compareSent orders by sent date, then mailbox order (UID).
func compareSent(a, b *sortInfo) int {
	if c := a.sent.Compare(b.sent); c != 0 {
		return c
	}
	return cmpInt(int64(a.m.UID), int64(b.m.UID))
}

// orderedSubject threads by base subject: messages sorted by base subject
// then sent date; each run of one base subject is a thread whose first
// message is the parent of the others; threads sorted by the sent date of
// their first message.
func orderedSubject(infos []*sortInfo) []*threadNode {
	sorted := slices.Clone(infos)
	slices.SortStableFunc(sorted, func(a, b *sortInfo) int {
		if c := compareCasemap(a.subject, b.subject); c != 0 {
			return c
		}
		return compareSent(a, b)
	})
	var roots []*threadNode
	for i := 0; i < len(sorted); {
		root := &threadNode{info: sorted[i]}
		j := i + 1
		for ; j < len(sorted) && compareCasemap(sorted[j].subject, root.info.subject) == 0; j++ {
			root.children = append(root.children, &threadNode{info: sorted[j], parent: root})
		}
		roots = append(roots, root)
		i = j
	}
	slices.SortStableFunc(roots, func(a, b *threadNode) int { return compareSent(a.info, b.info) })
	return roots
}

// msgIDs returns the message IDs ("<...>") of a References or In-Reply-To
// field, without the angle brackets.
func msgIDs(v string) []string {
	var ids []string
	for {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			return ids
		}
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			return ids
		}
		if id := strings.TrimSpace(v[i+1 : i+j]); id != "" && !strings.ContainsAny(id, " \t<") {
			ids = append(ids, id)
		}
		v = v[i+j+1:]
	}
}

// isAncestor reports whether a is n or one of its ancestors.
func isAncestor(a, n *threadNode) bool {
	for ; n != nil; n = n.parent {
		if n == a {
			return true
		}
	}
	return false
}

func (n *threadNode) unlink() {
	if p := n.parent; p != nil {
		p.children = slices.DeleteFunc(p.children, func(c *threadNode) bool { return c == n })
		n.parent = nil
	}
}

func (n *threadNode) adopt(c *threadNode) {
	c.unlink()
	c.parent = n
	n.children = append(n.children, c)
}

// threadSubject is the base subject of a thread: its message's, or its
// first child's for a dummy.
func (n *threadNode) threadSubject() *sortInfo {
	for n.info == nil {
		if len(n.children) == 0 {
			return nil
		}
		n = n.children[0]
	}
	return n.info
}

// sentOf is the date that sorts a node: its message's, or its first
// child's for a dummy.
func (n *threadNode) sentOf() *sortInfo { return n.threadSubject() }

// references threads as RFC 5256 section 3 REFERENCES says (after Jamie
// Zawinski's algorithm): steps 1 to 6.
func references(infos []*sortInfo) []*threadNode {
	byID := map[string]*threadNode{}
	var all []*threadNode // in creation order, for determinism
	get := func(id string) *threadNode {
		n := byID[id]
		if n == nil {
			n = &threadNode{}
			byID[id] = n
			all = append(all, n)
		}
		return n
	}
	// (1) Link messages by their references.
	for _, in := range infos {
		id := in.env.MessageID
		var c *threadNode
		if id != "" {
			if n := byID[id]; n == nil || n.info == nil {
				c = get(id)
			}
		}
		if c == nil { // no Message-ID, or a duplicate: a unique one
			c = get("\x00" + strconv.FormatUint(uint64(in.m.UID), 10))
		}
		c.info = in
		refs := msgIDs(fieldValue(in.hdr, "References"))
		if len(refs) == 0 {
			if irt := msgIDs(fieldValue(in.hdr, "In-Reply-To")); len(irt) > 0 {
				refs = irt[:1]
			}
		}
		// (A) Each reference the parent of the next, where the child has
		// no parent yet and no loop is made.
		for i := 1; i < len(refs); i++ {
			parent, child := get(refs[i-1]), get(refs[i])
			if child.parent == nil && !isAncestor(child, parent) {
				parent.adopt(child)
			}
		}
		// (B) The last reference is the message's parent: the parent it
		// has is dropped even when that link would make a loop (a message
		// that refers to itself or to its descendant), as Dovecot does.
		c.unlink()
		if len(refs) > 0 {
			if p := get(refs[len(refs)-1]); !isAncestor(c, p) {
				p.adopt(c)
			}
		}
	}
	// (2) The root set.
	var roots []*threadNode
	for _, n := range all {
		if n.parent == nil {
			roots = append(roots, n)
		}
	}
	// (4) Prune dummies.
	roots = pruneDummies(roots, true)
	for _, r := range roots {
		r.parent = nil
	}
	// The order of the root's children and of a dummy's children, which
	// step 5 takes the subject of, is left open by the RFC: sorted first
	// by sent date, as in step 6, as Dovecot does (the same threads as
	// Dovecot 2.3 on random mailboxes).
	sortThreads(roots)
	// (5) Gather threads of the same base subject.
	table := map[string]*threadNode{}
	key := func(n *threadNode) (string, *sortInfo) {
		in := n.threadSubject()
		if in == nil || in.subject == "" {
			return "", in
		}
		return strings.Map(func(r rune) rune {
			if 'a' <= r && r <= 'z' {
				return r - 'a' + 'A'
			}
			return r
		}, in.subject), in
	}
	for _, n := range roots {
		k, in := key(n)
		if k == "" {
			continue
		}
		t := table[k]
		if t == nil || (t.info != nil && (n.info == nil || (t.info.reply && !in.reply))) {
			table[k] = n
		}
	}
	var merged []*threadNode
	pos := map[*threadNode]int{}
	for _, n := range roots {
		k, in := key(n)
		t := table[k]
		if k == "" || t == n {
			pos[n] = len(merged)
			merged = append(merged, n)
			continue
		}
		switch {
		case t.info == nil && n.info == nil:
			for _, c := range slices.Clone(n.children) {
				t.adopt(c)
			}
		case t.info == nil:
			t.adopt(n)
		case in.reply && !t.info.reply:
			t.adopt(n)
		default:
			d := &threadNode{}
			if i, ok := pos[t]; ok {
				merged[i] = d
				pos[d] = i
				delete(pos, t)
			} else {
				// t comes later among the roots: d takes its place then.
				for i, r := range roots {
					if r == t {
						roots[i] = d
					}
				}
			}
			d.adopt(t)
			d.adopt(n)
			table[k] = d
		}
	}
	// (6) Siblings by sent date, the deepest first.
	sortThreads(merged)
	return merged
}

// pruneDummies removes dummies without children and puts the children of
// the others in their place, except at the root where a dummy with more
// than one child stays.
func pruneDummies(nodes []*threadNode, root bool) []*threadNode {
	var out []*threadNode
	for _, n := range nodes {
		n.children = pruneDummies(n.children, false)
		for _, c := range n.children {
			c.parent = n
		}
		if n.info == nil {
			if len(n.children) == 0 {
				continue
			}
			if !root || len(n.children) == 1 {
				for _, c := range n.children {
					c.parent = n.parent
				}
				out = append(out, n.children...)
				continue
			}
		}
		out = append(out, n)
	}
	return out
}

func sortThreads(nodes []*threadNode) {
	for _, n := range nodes {
		sortThreads(n.children)
	}
	slices.SortStableFunc(nodes, func(a, b *threadNode) int { return compareSent(a.sentOf(), b.sentOf()) })
}

// fieldValue returns the value of the first field key of a header, its
// lines unfolded, or "": what textproto.ReadHeader(...).Get(key) gives
// for the message-ID lists THREAD reads, without making the whole
// header (half of THREAD REFERENCES' time on 10 000 messages).
func fieldValue(hdr []byte, key string) string {
	for len(hdr) > 0 {
		line := hdr
		i := bytes.IndexByte(hdr, '\n')
		if i >= 0 {
			line, hdr = hdr[:i], hdr[i+1:]
		} else {
			hdr = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			return "" // the end of the header
		}
		if len(line) <= len(key) || line[len(key)] != ':' || !bytes.EqualFold(line[:len(key)], []byte(key)) {
			continue
		}
		v := []byte(strings.TrimSpace(string(line[len(key)+1:])))
		for len(hdr) > 0 && (hdr[0] == ' ' || hdr[0] == '\t') {
			next := hdr
			if j := bytes.IndexByte(hdr, '\n'); j >= 0 {
				next, hdr = hdr[:j], hdr[j+1:]
			} else {
				hdr = nil
			}
			if t := bytes.Trim(bytes.TrimSuffix(next, []byte("\r")), " \t"); len(t) > 0 {
				if len(v) > 0 {
					v = append(v, ' ')
				}
				v = append(v, t...)
			}
		}
		return string(v)
	}
	return ""
}
