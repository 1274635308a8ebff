package imap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailctl/mailctl/server/store"
)

// SORT and THREAD (RFC 5256) and ESORT (RFC 5267): go-imap v2 has neither
// commands nor a public parser of search keys, so conn hands their lines
// (without literals) to the logged-in session (extCommand), which parses
// them here (parseSearchKeys, as the library's readSearchKey does) and
// selects the messages with the SEARCH code (session.eachMatch).

// extFunc answers a command that conn intercepts for the logged-in
// session: the whole answer, tagged response included.
type extFunc func(tag, cmd, args string) []byte

// extCaps are the capabilities of extFunc's commands, announced once
// logged in (the library lists only those it knows).
var extCaps = []string{"SORT", "ESORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES"}

// setExt enables the commands of extFunc for the logged-in session.
func (c *conn) setExt(f extFunc) { c.ext.Store(&f) }

// answerExt answers SORT, THREAD, UID SORT and UID THREAD once logged in;
// anything else (other UID commands) is left to the library.
func (c *conn) answerExt(tag, cmd, args string) (bool, error) {
	f := c.ext.Load()
	if f == nil {
		return false, nil
	}
	if cmd == "UID" {
		sub, _, _ := strings.Cut(args, " ")
		if sub = strings.ToUpper(sub); sub != "SORT" && sub != "THREAD" && !(sub == "SEARCH" && mentionsModSeq(args)) {
			return false, nil
		}
	}
	return true, c.writeResponses((*f)(tag, cmd, args))
}

// errBad is a syntax error in the client's command: answered BAD.
type errBad string

func (e errBad) Error() string { return string(e) }

// extCommand answers SORT, THREAD, UID SORT and UID THREAD.
func (s *session) extCommand(tag, cmd, args string) []byte {
	uid := false
	if cmd == "UID" {
		uid = true
		cmd, args, _ = strings.Cut(args, " ")
		cmd = strings.ToUpper(cmd)
	}
	name := cmd
	if uid {
		name = "UID " + cmd
	}
	if s.view == nil {
		return []byte(tag + " BAD No mailbox selected\r\n")
	}
	var out []byte
	var err error
	switch cmd {
	case "SORT":
		out, err = s.sortCommand(tag, uid, args)
	case "THREAD":
		out, err = s.threadCommand(uid, args)
	case "SEARCH":
		out, err = s.searchModSeqCommand(tag, uid, args) // condstore.go
	}
	var bad errBad
	var ie *goimap.Error
	switch {
	case errors.As(err, &bad):
		return []byte(tag + " BAD " + name + ": " + bad.Error() + "\r\n")
	case errors.As(err, &ie):
		code := ""
		if ie.Code != "" {
			code = "[" + string(ie.Code) + "] "
		}
		return []byte(tag + " " + string(ie.Type) + " " + code + ie.Text + "\r\n")
	case err != nil:
		s.logger.ErrorContext(s.ctx, "imap "+strings.ToLower(name), "err", err)
		return []byte(tag + " NO [SERVERBUG] " + name + " failed\r\n")
	}
	return append(out, tag+" OK "+name+" completed\r\n"...)
}

// sortKey is one SORT criterion.
type sortKey struct {
	name    string // ARRIVAL, CC, DATE, FROM, SIZE, SUBJECT, TO
	reverse bool
}

// sortInfo is what SORT and THREAD compare of a message.
type sortInfo struct {
	cseq    uint32
	m       store.Message
	env     *goimap.Envelope
	hdr     []byte // the cached header, for THREAD REFERENCES
	subject string // base subject (RFC 5256 section 2.1)
	reply   bool   // the subject was a reply or forward's
	sent    time.Time
}

func (s *session) sortCommand(tag string, uid bool, args string) ([]byte, error) {
	p := &keyParser{s: args}
	var ret *goimap.SearchOptions
	if p.word("RETURN") {
		ret = &goimap.SearchOptions{}
		opts, err := p.list()
		if err != nil {
			return nil, err
		}
		for _, o := range opts {
			switch strings.ToUpper(o) {
			case "MIN":
				ret.ReturnMin = true
			case "MAX":
				ret.ReturnMax = true
			case "ALL":
				ret.ReturnAll = true
			case "COUNT":
				ret.ReturnCount = true
			case "SAVE":
				ret.ReturnSave = true
			default:
				return nil, errBad("unknown RETURN option " + o)
			}
		}
		if !ret.ReturnMin && !ret.ReturnMax && !ret.ReturnCount && !ret.ReturnSave {
			ret.ReturnAll = true // RETURN () is RETURN (ALL)
		}
	}
	words, err := p.list()
	if err != nil {
		return nil, err
	}
	var keys []sortKey
	for i := 0; i < len(words); i++ {
		k := sortKey{name: strings.ToUpper(words[i])}
		if k.name == "REVERSE" {
			if i++; i == len(words) {
				return nil, errBad("REVERSE without a sort key")
			}
			k = sortKey{name: strings.ToUpper(words[i]), reverse: true}
		}
		switch k.name {
		case "ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO":
		default:
			return nil, errBad("unknown sort key " + k.name)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errBad("no sort key")
	}
	infos, err := s.selectForSort(p, true, false)
	if err != nil {
		return nil, err
	}
	sortMessages(infos, keys)
	if ret != nil && ret.ReturnSave {
		var set goimap.UIDSet
		for _, in := range infos {
			set.AddNum(goimap.UID(in.m.UID))
		}
		s.view.searchRes = set
	}
	nums := make([]uint32, 0, len(infos))
	for _, in := range infos {
		switch {
		case uid:
			nums = append(nums, in.m.UID)
		case in.cseq != 0:
			nums = append(nums, in.cseq)
		}
	}
	if ret == nil {
		b := []byte("* SORT")
		for _, n := range nums {
			b = append(b, ' ')
			b = strconv.AppendUint(b, uint64(n), 10)
		}
		return append(b, "\r\n"...), nil
	}
	if !ret.ReturnMin && !ret.ReturnMax && !ret.ReturnAll && !ret.ReturnCount {
		return nil, nil // SAVE alone: no ESEARCH (RFC 5182 section 2.1)
	}
	// RFC 5267 section 3.1: MIN and MAX are the first and last in the
	// sort order, ALL lists the numbers in that order.
	b := []byte(`* ESEARCH (TAG "` + tag + `")`)
	if uid {
		b = append(b, " UID"...)
	}
	if len(nums) > 0 {
		if ret.ReturnMin {
			b = append(b, " MIN "...)
			b = strconv.AppendUint(b, uint64(nums[0]), 10)
		}
		if ret.ReturnMax {
			b = append(b, " MAX "...)
			b = strconv.AppendUint(b, uint64(nums[len(nums)-1]), 10)
		}
		if ret.ReturnAll {
			b = append(b, " ALL "...)
			b = appendOrderedSet(b, nums)
		}
	}
	if ret.ReturnCount {
		b = append(b, " COUNT "...)
		b = strconv.AppendInt(b, int64(len(nums)), 10)
	}
	return append(b, "\r\n"...), nil
}

// appendOrderedSet appends nums as a sequence-set that keeps their order:
// runs of consecutive ascending numbers as ranges, the rest one by one.
func appendOrderedSet(b []byte, nums []uint32) []byte {
	for i := 0; i < len(nums); {
		j := i
		for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
			j++
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(nums[i]), 10)
		if j > i {
			b = append(b, ':')
			b = strconv.AppendUint(b, uint64(nums[j]), 10)
		}
		i = j + 1
	}
	return b
}

// selectForSort reads the charset and search keys left in p, and returns
// the messages they select, with what SORT and THREAD compare: envelopes
// (withEnv) and cached headers (withHdr).
func (s *session) selectForSort(p *keyParser, withEnv, withHdr bool) ([]*sortInfo, error) {
	charset, ok := p.token()
	if !ok {
		return nil, errBad("missing charset")
	}
	switch strings.ToUpper(charset) {
	case "UTF-8", "US-ASCII":
	default:
		return nil, &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: "BADCHARSET (UTF-8 US-ASCII)", Text: "Unsupported charset"}
	}
	criteria, err := p.searchKeys()
	if err != nil {
		return nil, err
	}
	if err := s.syncCmd(s.view.sm); err != nil {
		return nil, s.imapError(err)
	}
	var infos []*sortInfo
	if err := s.eachMatch(criteria, func(cseq uint32, m *store.Message) {
		infos = append(infos, &sortInfo{cseq: cseq, m: *m})
	}); err != nil {
		return nil, err
	}
	uids := make([]uint32, len(infos))
	for i, in := range infos {
		uids[i] = in.m.UID
	}
	id := s.view.sm.key.id
	var hdrs [][]byte
	if withHdr {
		if hdrs, err = s.srv.st.Headers(s.ctx, s.user, id, uids); err != nil {
			return nil, s.imapError(err)
		}
	}
	if withEnv {
		sums, err := s.srv.st.Summaries(s.ctx, s.user, id, uids)
		if err != nil {
			return nil, s.imapError(err)
		}
		for i, in := range infos {
			if i < len(sums) {
				in.env, _ = decodeEnvelope(sums[i])
			}
		}
	}
	if hdrs == nil {
		// Envelopes that did not decode (kept by an older version) are
		// made from the headers, read at once.
		var missing []uint32
		for _, in := range infos {
			if in.env == nil {
				missing = append(missing, in.m.UID)
			}
		}
		if len(missing) > 0 {
			some, err := s.srv.st.Headers(s.ctx, s.user, id, missing)
			if err != nil {
				return nil, s.imapError(err)
			}
			k := 0
			for _, in := range infos {
				if in.env == nil && k < len(some) {
					in.env = envelopeBytes(some[k])
					k++
				}
			}
		}
	}
	for i, in := range infos {
		if hdrs != nil {
			in.hdr = hdrs[i]
		}
		if in.env == nil {
			in.env = envelopeBytes(in.hdr)
		}
		in.subject, in.reply = baseSubject(in.env.Subject)
		// RFC 5256 section 2.2: the Date field, else the internal date.
		in.sent = in.env.Date
		if in.sent.IsZero() {
			in.sent = in.m.InternalDate
		}
	}
	return infos, nil
}

// sortMessages sorts infos by keys; messages that compare equal stay in
// mailbox order (RFC 5256 section 3).
func sortMessages(infos []*sortInfo, keys []sortKey) {
	slices.SortStableFunc(infos, func(a, b *sortInfo) int {
		for _, k := range keys {
			c := compareKey(a, b, k.name)
			if k.reverse {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
}

func compareKey(a, b *sortInfo, key string) int {
	switch key {
	case "ARRIVAL":
		return a.m.InternalDate.Compare(b.m.InternalDate)
	case "DATE":
		return a.sent.Compare(b.sent)
	case "SIZE":
		return cmpInt(a.m.Size, b.m.Size)
	case "SUBJECT":
		return compareCasemap(a.subject, b.subject)
	case "FROM":
		return compareCasemap(firstMailbox(a.env.From), firstMailbox(b.env.From))
	case "TO":
		return compareCasemap(firstMailbox(a.env.To), firstMailbox(b.env.To))
	case "CC":
		return compareCasemap(firstMailbox(a.env.Cc), firstMailbox(b.env.Cc))
	}
	return 0
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// firstMailbox is the addr-mailbox of the first address (RFC 5256
// section 3: FROM, TO, CC), group markers skipped; "" when none.
func firstMailbox(addrs []goimap.Address) string {
	for _, a := range addrs {
		if a.Host != "" {
			return a.Mailbox
		}
	}
	return ""
}

// compareCasemap compares by the i;ascii-casemap collation (RFC 4790):
// ASCII letters folded to upper case, then octet by octet.
func compareCasemap(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := upperASCII(a[i]), upperASCII(b[i])
		if x != y {
			return int(x) - int(y)
		}
	}
	return len(a) - len(b)
}

func upperASCII(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// baseSubject extracts the base subject (RFC 5256 section 2.1) of a
// subject already decoded to UTF-8, and reports whether it was a reply or
// forward's (a "Re:", "Fw:", "Fwd:" leader, a "(fwd)" trailer, or a
// "[fwd: ...]" wrapping removed).
func baseSubject(subject string) (string, bool) {
	// (1) Runs of white space to one space.
	s := strings.Join(strings.FieldsFunc(subject, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' }), " ")
	reply := false
	for {
		// (2) Trailing "(fwd)" and blanks.
		for {
			t := strings.TrimRight(s, " ")
			if n := len(t) - len("(fwd)"); n >= 0 && strings.EqualFold(t[n:], "(fwd)") {
				t = t[:n]
				reply = true
			}
			if t == s {
				break
			}
			s = t
		}
		// (3)-(5) Leaders and blobs.
		for {
			t, refwd := stripLeader(s)
			reply = reply || refwd
			if b := stripBlob(t); b != t && b != "" {
				t = b
			}
			if t == s {
				break
			}
			s = t
		}
		// (6) "[fwd: ...]".
		if len(s) >= 6 && strings.EqualFold(s[:5], "[fwd:") && s[len(s)-1] == ']' {
			s = s[5 : len(s)-1]
			reply = true
			continue
		}
		return s, reply
	}
}

// stripLeader removes the leading subj-leader of RFC 5256 section 5:
// blanks, or blobs then "re", "fw" or "fwd", blanks, maybe a blob, ":".
func stripLeader(s string) (string, bool) {
	if strings.HasPrefix(s, " ") {
		return strings.TrimLeft(s, " "), false
	}
	t := s
	for {
		b := stripBlob(t)
		if b == t {
			break
		}
		t = b
	}
	lower := strings.ToLower(t)
	var n int
	switch {
	case strings.HasPrefix(lower, "re"):
		n = 2
	case strings.HasPrefix(lower, "fwd"):
		n = 3
	case strings.HasPrefix(lower, "fw"):
		n = 2
	default:
		return s, false
	}
	t = strings.TrimLeft(t[n:], " ")
	if b := stripBlob(t); b != t {
		t = b
	}
	if !strings.HasPrefix(t, ":") {
		return s, false
	}
	return t[1:], true
}

// stripBlob removes a leading subj-blob: "[" chars but "[" and "]", "]",
// blanks; s as is when there is none.
func stripBlob(s string) string {
	if !strings.HasPrefix(s, "[") {
		return s
	}
	end := strings.IndexAny(s[1:], "[]")
	if end < 0 || s[1+end] != ']' {
		return s
	}
	return strings.TrimLeft(s[end+2:], " ")
}

// keyParser reads the arguments of SORT and THREAD.
type keyParser struct {
	s string
}

func (p *keyParser) skipSpace() {
	p.s = strings.TrimLeft(p.s, " ")
}

// word consumes w (an atom, any case) if it comes next.
func (p *keyParser) word(w string) bool {
	p.skipSpace()
	if len(p.s) >= len(w) && strings.EqualFold(p.s[:len(w)], w) && (len(p.s) == len(w) || p.s[len(w)] == ' ') {
		p.s = p.s[len(w):]
		return true
	}
	return false
}

// token reads an atom or a quoted string.
func (p *keyParser) token() (string, bool) {
	p.skipSpace()
	if p.s == "" {
		return "", false
	}
	if p.s[0] == '"' {
		var b strings.Builder
		for i := 1; i < len(p.s); i++ {
			c := p.s[i]
			switch c {
			case '\\':
				if i+1 < len(p.s) {
					i++
					b.WriteByte(p.s[i])
				}
			case '"':
				p.s = p.s[i+1:]
				return b.String(), true
			default:
				b.WriteByte(c)
			}
		}
		return "", false
	}
	i := strings.IndexAny(p.s, " ()")
	if i == 0 {
		return "", false
	}
	if i < 0 {
		i = len(p.s)
	}
	t := p.s[:i]
	p.s = p.s[i:]
	return t, true
}

// list reads a parenthesized list of atoms.
func (p *keyParser) list() ([]string, error) {
	p.skipSpace()
	if !strings.HasPrefix(p.s, "(") {
		return nil, errBad("expected a list")
	}
	p.s = p.s[1:]
	var out []string
	for {
		p.skipSpace()
		if strings.HasPrefix(p.s, ")") {
			p.s = p.s[1:]
			return out, nil
		}
		t, ok := p.token()
		if !ok {
			return nil, errBad("unterminated list")
		}
		out = append(out, t)
	}
}

// searchKeys reads the rest as search keys (RFC 9051 section 6.4.4),
// mapped to criteria as the library's SEARCH parser does.
func (p *keyParser) searchKeys() (*goimap.SearchCriteria, error) {
	c := &goimap.SearchCriteria{}
	p.skipSpace()
	if p.s == "" {
		return nil, errBad("missing search criteria")
	}
	for {
		p.skipSpace()
		if p.s == "" {
			return c, nil
		}
		if err := p.searchKey(c); err != nil {
			return nil, err
		}
	}
}

func (p *keyParser) searchKey(c *goimap.SearchCriteria) error {
	p.skipSpace()
	if strings.HasPrefix(p.s, "(") {
		p.s = p.s[1:]
		for {
			p.skipSpace()
			if strings.HasPrefix(p.s, ")") {
				p.s = p.s[1:]
				return nil
			}
			if p.s == "" {
				return errBad("unterminated parenthesized key")
			}
			if err := p.searchKey(c); err != nil {
				return err
			}
		}
	}
	key, ok := p.token()
	if !ok {
		return errBad("missing search key")
	}
	arg := func() (string, error) {
		v, ok := p.token()
		if !ok {
			return "", errBad("missing argument of " + key)
		}
		return v, nil
	}
	switch k := strings.ToUpper(key); k {
	case "ALL":
	case "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "RECENT", "SEEN":
		c.Flag = append(c.Flag, goimap.Flag(`\`+k[:1]+strings.ToLower(k[1:])))
	case "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN":
		c.NotFlag = append(c.NotFlag, goimap.Flag(`\`+k[2:3]+strings.ToLower(k[3:])))
	case "NEW":
		c.Flag = append(c.Flag, `\Recent`)
		c.NotFlag = append(c.NotFlag, goimap.FlagSeen)
	case "OLD":
		c.NotFlag = append(c.NotFlag, `\Recent`)
	case "KEYWORD", "UNKEYWORD":
		v, err := arg()
		if err != nil {
			return err
		}
		if k == "KEYWORD" {
			c.Flag = append(c.Flag, goimap.Flag(v))
		} else {
			c.NotFlag = append(c.NotFlag, goimap.Flag(v))
		}
	case "BCC", "CC", "FROM", "SUBJECT", "TO":
		v, err := arg()
		if err != nil {
			return err
		}
		c.Header = append(c.Header, goimap.SearchCriteriaHeaderField{Key: k[:1] + strings.ToLower(k[1:]), Value: v})
	case "HEADER":
		f, err := arg()
		if err != nil {
			return err
		}
		v, err := arg()
		if err != nil {
			return err
		}
		c.Header = append(c.Header, goimap.SearchCriteriaHeaderField{Key: f, Value: v})
	case "SINCE", "BEFORE", "ON", "SENTSINCE", "SENTBEFORE", "SENTON":
		v, err := arg()
		if err != nil {
			return err
		}
		t, err := time.Parse("2-Jan-2006", v)
		if err != nil {
			return errBad("invalid date " + v)
		}
		var d goimap.SearchCriteria
		switch k {
		case "SINCE":
			d.Since = t
		case "BEFORE":
			d.Before = t
		case "ON":
			d.Since, d.Before = t, t.Add(24*time.Hour)
		case "SENTSINCE":
			d.SentSince = t
		case "SENTBEFORE":
			d.SentBefore = t
		case "SENTON":
			d.SentSince, d.SentBefore = t, t.Add(24*time.Hour)
		}
		c.And(&d)
	case "BODY", "TEXT":
		v, err := arg()
		if err != nil {
			return err
		}
		if k == "BODY" {
			c.Body = append(c.Body, v)
		} else {
			c.Text = append(c.Text, v)
		}
	case "LARGER", "SMALLER":
		v, err := arg()
		if err != nil {
			return err
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return errBad("invalid size " + v)
		}
		if k == "LARGER" {
			c.And(&goimap.SearchCriteria{Larger: n})
		} else {
			c.And(&goimap.SearchCriteria{Smaller: n})
		}
	case "NOT":
		var not goimap.SearchCriteria
		if err := p.searchKey(&not); err != nil {
			return err
		}
		c.Not = append(c.Not, not)
	case "OR":
		var or [2]goimap.SearchCriteria
		if err := p.searchKey(&or[0]); err != nil {
			return err
		}
		if err := p.searchKey(&or[1]); err != nil {
			return err
		}
		c.Or = append(c.Or, or)
	case "UID":
		v, err := arg()
		if err != nil {
			return err
		}
		if v == "$" {
			c.UID = append(c.UID, goimap.SearchRes())
			return nil
		}
		set, err := parseNumSet(v)
		if err != nil {
			return err
		}
		var uids goimap.UIDSet
		for _, r := range set {
			uids = append(uids, goimap.UIDRange{Start: goimap.UID(r.Start), Stop: goimap.UID(r.Stop)})
		}
		c.UID = append(c.UID, uids)
	case "$":
		c.UID = append(c.UID, goimap.SearchRes())
	case "MODSEQ":
		ms, err := p.modseqKey()
		if err != nil {
			return err
		}
		if c.ModSeq == nil || ms > c.ModSeq.ModSeq {
			c.ModSeq = &goimap.SearchCriteriaModSeq{ModSeq: ms}
		}
	default:
		set, err := parseNumSet(key)
		if err != nil {
			return errBad("unknown search key " + key)
		}
		c.SeqNum = append(c.SeqNum, set)
	}
	return nil
}

// parseNumSet parses a sequence-set ("1,3:5,7:*"); "*" is 0, as the
// library has it.
func parseNumSet(s string) (goimap.SeqSet, error) {
	var set goimap.SeqSet
	num := func(v string) (uint32, error) {
		if v == "*" {
			return 0, nil
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return 0, errBad(fmt.Sprintf("invalid number %q", v))
		}
		return uint32(n), nil
	}
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(part, ":")
		start, err := num(a)
		if err != nil {
			return nil, err
		}
		stop := start
		if isRange {
			if stop, err = num(b); err != nil {
				return nil, err
			}
		}
		if start != 0 && stop != 0 && start > stop {
			start, stop = stop, start
		}
		set = append(set, goimap.SeqRange{Start: start, Stop: stop})
	}
	return set, nil
}

// maxExtLiteral bounds a literal in SORT and THREAD criteria.
const maxExtLiteral = 64 << 10

// answerExtLiteral answers SORT, THREAD, UID SORT and UID THREAD lines
// that end in a literal (webmails send strings beyond ASCII so, RFC 9051
// section 4.3): it reads the literals, sending "+" for synchronizing
// ones, and hands the command on with each literal as a quoted string.
// cmdLine is the first line without CRLF; anything else is left to the
// library (false).
func (c *conn) answerExtLiteral(tag string, cmdLine []byte) (bool, error) {
	f := c.ext.Load()
	if f == nil {
		return false, nil
	}
	cmd, args, _ := strings.Cut(string(cmdLine), " ")
	cmd = strings.ToUpper(cmd)
	sub := cmd
	if cmd == "UID" {
		sub, _, _ = strings.Cut(args, " ")
		sub = strings.ToUpper(sub)
	}
	if sub != "SORT" && sub != "THREAD" {
		return false, nil
	}
	var b strings.Builder
	line := args
	tooBig := false
	for {
		open := strings.LastIndexByte(line, '{')
		spec := line[open+1 : len(line)-1]
		sync := !strings.HasSuffix(spec, "+") && !strings.HasSuffix(spec, "-")
		n, err := strconv.ParseInt(strings.TrimRight(spec, "+-"), 10, 64)
		if err != nil || n < 0 {
			return true, c.writeRaw(tag + " BAD Invalid literal\r\n")
		}
		if n > maxExtLiteral {
			if sync {
				return true, c.writeRaw(tag + " BAD Literal too large\r\n")
			}
			tooBig = true
		}
		b.WriteString(strings.TrimSuffix(line[:open], "~"))
		if sync {
			if err := c.writeRaw("+ Ready for literal data\r\n"); err != nil {
				return true, err
			}
		}
		if tooBig {
			if _, err := c.br.Discard(int(n)); err != nil {
				return true, err
			}
		} else {
			lit := make([]byte, n)
			if _, err := io.ReadFull(c.br, lit); err != nil {
				return true, err
			}
			b.WriteByte('"')
			for _, ch := range lit {
				if ch == '"' || ch == '\\' {
					b.WriteByte('\\')
				}
				b.WriteByte(ch)
			}
			b.WriteByte('"')
		}
		next, err := c.br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return true, c.writeRaw(tag + " BAD Command line too long\r\n")
			}
			return true, err
		}
		line = strings.TrimRight(string(next), "\r\n")
		if literalSize(next) == 0 {
			b.WriteString(line)
			break
		}
	}
	if tooBig {
		return true, c.writeRaw(tag + " BAD Literal too large\r\n")
	}
	return true, c.writeResponses((*f)(tag, cmd, b.String()))
}
