package sieve

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Compiled commands.
type cmd any

type (
	cIf struct {
		conds  []test // nil for else
		bodies [][]cmd
	}
	cStop    struct{}
	cDiscard struct{}
	cKeep    struct {
		flags    []string
		hasFlags bool
	}
	cFileInto struct {
		mailbox      string
		flags        []string
		hasFlags     bool
		copy, create bool
	}
	cRedirect struct {
		addr string
		copy bool
	}
	cReject struct {
		reason string
		ext    bool
	}
	cVacation struct {
		days                  int
		subject, from, handle string
		reason                string
		addresses             []string
		mime                  bool
	}
	cFlag struct {
		op      string // setflag, addflag, removeflag
		varname string // "" for the internal variable
		flags   []string
	}
	cSet struct {
		mods        []string
		name, value string
	}
)

// Compiled tests.
type test any

type (
	tConst bool
	tNot   struct{ t test }
	tList  struct {
		all bool
		ts  []test
	}
	tHeader struct {
		m             matcher
		headers, keys []string
	}
	tAddress struct {
		m             matcher
		part          string
		headers, keys []string
	}
	tEnvelope struct {
		m           matcher
		part        string
		parts, keys []string
	}
	tExists struct{ headers []string }
	tSize   struct {
		over bool
		n    uint64
	}
	tBody struct {
		m         matcher
		transform string
		types     []string
		keys      []string
	}
	tString struct {
		m             matcher
		sources, keys []string
	}
	tHasFlag struct {
		m          matcher
		vars, keys []string
	}
	tDate struct {
		m       matcher
		current bool
		zone    *time.Location
		orig    bool
		header  string
		part    string
		keys    []string
	}
)

// Actions a run returns, for the caller to carry out.
type (
	// Keep stores the message in INBOX with Flags.
	Keep struct {
		Flags    []string
		Implicit bool // no action cancelled the implicit keep
	}
	// FileInto stores the message in Mailbox with Flags; Create asks for
	// the mailbox to be created when missing (:create).
	FileInto struct {
		Mailbox string
		Flags   []string
		Create  bool
	}
	// Redirect forwards the message unchanged to Address.
	Redirect struct{ Address string }
	// Discard drops the message silently.
	Discard struct{}
	// Reject refuses the message with Reason (at SMTP time when possible,
	// with a DSN otherwise). Extended is true for ereject.
	Reject struct {
		Reason   string
		Extended bool
	}
	// Vacation asks for an automatic reply (RFC 5230); the caller checks
	// whether one may be sent (AutoReplyAllowed) and when the last was.
	Vacation struct {
		Days      int
		Subject   string
		From      string
		Addresses []string
		MIME      bool
		Handle    string
		Reason    string
	}
)

// Action is one of Keep, FileInto, Redirect, Discard, Reject, Vacation.
type Action any

// Envelope is the SMTP envelope of the message for one recipient.
type Envelope struct {
	From string // reverse path, "" for the null sender
	To   string // the recipient the script runs for
}

// RunOptions are the per-run settings.
type RunOptions struct {
	Now time.Time // currentdate and the default zone; zero means time.Now()
	// SubaddressSep holds the characters that separate user and detail
	// (RFC 5233), like Postfix's recipient_delimiter: the detail starts
	// at the first of any of them; default "+".
	SubaddressSep string
	// NoSubaddress: addresses have no detail (a server configured with
	// recipient_delimiter = ""): :user is the local part, :detail never
	// matches.
	NoSubaddress bool
}

// Result is the outcome of a run: the actions in the order the script asked
// for them, with the implicit keep, when it stands, as a Keep with
// Implicit set.
type Result struct {
	Actions []Action
}

// ErrLimit is wrapped by run errors caused by a limit.
var ErrLimit = errors.New("sieve limit reached")

type runner struct {
	s       *Script
	ctx     context.Context
	msg     *Message
	env     Envelope
	opt     RunOptions
	steps   int
	vars    map[string]string
	mvars   []string
	flags   []string // the imap4flags internal variable
	acts    []Action
	cancel  bool // implicit keep cancelled
	redirs  int
	stopped bool
}

// Run runs the script on msg for one recipient. On error (a limit, a
// conflict between actions, a cancelled ctx) the caller must do an implicit
// keep, as RFC 5228 2.10.6 requires; the error says why.
func (s *Script) Run(ctx context.Context, msg *Message, env Envelope, opt RunOptions) (*Result, error) {
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	if opt.SubaddressSep == "" {
		opt.SubaddressSep = "+"
	}
	r := &runner{s: s, ctx: ctx, msg: msg, env: env, opt: opt, vars: map[string]string{}}
	if err := r.block(s.cmds); err != nil {
		return nil, fmt.Errorf("running sieve script %s: %w", s.name, err)
	}
	if err := r.conflicts(); err != nil {
		return nil, fmt.Errorf("running sieve script %s: %w", s.name, err)
	}
	if !r.cancel {
		r.acts = append(r.acts, Keep{Flags: append([]string(nil), r.flags...), Implicit: true})
	}
	return &Result{Actions: dedupe(r.acts)}, nil
}

func (r *runner) step(n int) error {
	r.steps += n
	if r.steps > r.s.lim.MaxSteps {
		return fmt.Errorf("%w: more than %d steps", ErrLimit, r.s.lim.MaxSteps)
	}
	if r.steps&1023 == 0 {
		if err := r.ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) add(a Action) error {
	if len(r.acts) >= r.s.lim.MaxActions {
		return fmt.Errorf("%w: more than %d actions", ErrLimit, r.s.lim.MaxActions)
	}
	r.acts = append(r.acts, a)
	return nil
}

func (r *runner) conflicts() error {
	var reject, deliver, vacation int
	for _, a := range r.acts {
		switch a.(type) {
		case Reject:
			reject++
		case Keep, FileInto, Redirect:
			deliver++
		case Vacation:
			vacation++
		}
	}
	if reject > 1 {
		return errors.New("reject used more than once")
	}
	if reject > 0 && (deliver > 0 || vacation > 0) {
		// RFC 5429 2.1: reject is incompatible with the actions that
		// deliver the message and with vacation.
		return errors.New("reject used with keep, fileinto, redirect or vacation")
	}
	if vacation > 1 {
		return errors.New("vacation used more than once")
	}
	return nil
}

// dedupe keeps the first of identical deliveries (RFC 5228 2.10.3: a
// message is filed once per mailbox); a later one's flags win.
func dedupe(acts []Action) []Action {
	var out []Action
	seen := map[string]int{}
	for _, a := range acts {
		key := ""
		switch a := a.(type) {
		case Keep:
			key = "box:inbox"
		case FileInto:
			key = "box:" + a.Mailbox
			if strings.EqualFold(a.Mailbox, "INBOX") {
				key = "box:inbox"
			}
		case Redirect:
			key = "redirect:" + strings.ToLower(a.Address)
		case Discard:
			key = "discard"
		}
		if key != "" {
			if i, dup := seen[key]; dup {
				switch a := a.(type) {
				case Keep:
					out[i] = replaceFlags(out[i], a.Flags)
				case FileInto:
					out[i] = replaceFlags(out[i], a.Flags)
				}
				continue
			}
			seen[key] = len(out)
		}
		out = append(out, a)
	}
	return out
}

func replaceFlags(a Action, flags []string) Action {
	switch a := a.(type) {
	case Keep:
		a.Flags = flags
		return a
	case FileInto:
		a.Flags = flags
		return a
	}
	return a
}

func (r *runner) block(cmds []cmd) error {
	for _, c := range cmds {
		if r.stopped {
			return nil
		}
		if err := r.step(1); err != nil {
			return err
		}
		if err := r.exec(c); err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) exec(c cmd) error {
	switch c := c.(type) {
	case *cIf:
		for i, cond := range c.conds {
			ok := true
			if cond != nil {
				var err error
				if ok, err = r.test(cond); err != nil {
					return err
				}
			}
			if ok {
				return r.block(c.bodies[i])
			}
		}
	case cStop:
		r.stopped = true
	case cDiscard:
		r.cancel = true
		return r.add(Discard{})
	case cKeep:
		flags := r.flags
		if c.hasFlags {
			flags = r.flagList(c.flags)
		}
		r.cancel = true
		return r.add(Keep{Flags: append([]string(nil), flags...)})
	case cFileInto:
		flags := r.flags
		if c.hasFlags {
			flags = r.flagList(c.flags)
		}
		box := r.expand(c.mailbox)
		if box == "" || !utf8.ValidString(box) {
			return fmt.Errorf("fileinto: %q is not a mailbox name", box)
		}
		if !c.copy {
			r.cancel = true
		}
		return r.add(FileInto{Mailbox: box, Flags: append([]string(nil), flags...), Create: c.create})
	case cRedirect:
		addr := r.expand(c.addr)
		if _, err := parseMailbox(addr); err != nil {
			return fmt.Errorf("redirect: %q is not a valid address", addr)
		}
		r.redirs++
		if r.redirs > r.s.lim.MaxRedirects {
			return fmt.Errorf("%w: more than %d redirects", ErrLimit, r.s.lim.MaxRedirects)
		}
		if !c.copy {
			r.cancel = true
		}
		return r.add(Redirect{Address: addr})
	case cReject:
		r.cancel = true
		return r.add(Reject{Reason: r.expand(c.reason), Extended: c.ext})
	case cVacation:
		v := Vacation{Days: c.days, Subject: r.expand(c.subject), From: r.expand(c.from),
			MIME: c.mime, Handle: r.expand(c.handle), Reason: r.expand(c.reason)}
		for _, a := range c.addresses {
			v.Addresses = append(v.Addresses, r.expand(a))
		}
		return r.add(v)
	case cFlag:
		cur := r.getFlags(c.varname)
		arg := r.flagList(c.flags)
		var next []string
		switch c.op {
		case "setflag":
			next = arg
		case "addflag":
			next = normFlags(append(append([]string(nil), cur...), arg...))
		case "removeflag":
			for _, f := range cur {
				if !containsFold(arg, f) {
					next = append(next, f)
				}
			}
		}
		return r.setFlags(c.varname, next)
	case cSet:
		return r.setVar(c.name, applyMods(c.mods, r.expand(c.value)))
	}
	return nil
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// flagList expands and splits a list of flags (each string may hold several
// separated by spaces) into a normalised set.
func (r *runner) flagList(in []string) []string {
	var out []string
	for _, s := range in {
		out = append(out, strings.Fields(r.expand(s))...)
	}
	return normFlags(out)
}

func normFlags(in []string) []string {
	var out []string
	for _, f := range in {
		if !containsFold(out, f) {
			out = append(out, f)
		}
	}
	return out
}

func (r *runner) getFlags(name string) []string {
	if name == "" {
		return r.flags
	}
	return strings.Fields(r.vars[name])
}

func (r *runner) setFlags(name string, flags []string) error {
	if name == "" {
		r.flags = flags
		return nil
	}
	return r.setVar(name, strings.Join(flags, " "))
}

func (r *runner) setVar(name, value string) error {
	if _, ok := r.vars[name]; !ok && len(r.vars) >= r.s.lim.MaxVariables {
		return fmt.Errorf("%w: more than %d variables", ErrLimit, r.s.lim.MaxVariables)
	}
	r.vars[name] = truncUTF8(value, r.s.lim.MaxVariableBytes)
	return r.step(len(value)/64 + 1)
}

func truncUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func applyMods(mods []string, v string) string {
	for _, m := range mods {
		switch m {
		case "lower":
			v = strings.ToLower(v)
		case "upper":
			v = strings.ToUpper(v)
		case "lowerfirst", "upperfirst":
			if r, n := utf8.DecodeRuneInString(v); n > 0 {
				f := strings.ToLower
				if m == "upperfirst" {
					f = strings.ToUpper
				}
				v = f(string(r)) + v[n:]
			}
		case "quotewildcard":
			v = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`).Replace(v)
		case "length":
			v = strconv.Itoa(utf8.RuneCountInString(v))
		}
	}
	return v
}

// expand substitutes ${name} and ${N} references (RFC 5229 3) when the
// script requires "variables"; unknown names expand to "".
func (r *runner) expand(s string) string {
	if !r.s.exts["variables"] || !strings.Contains(s, "${") {
		return s
	}
	limit := r.s.lim.MaxScriptBytes + r.s.lim.MaxVariableBytes
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		j := strings.IndexByte(s[i+2:], '}')
		if j < 0 {
			b.WriteString(s[i:])
			break
		}
		name := strings.ToLower(s[i+2 : i+2+j])
		if !validVarName(name) {
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		if isDigit(name[0]) {
			if n, err := strconv.Atoi(name); err == nil && n < len(r.mvars) {
				b.WriteString(r.mvars[n])
			}
		} else {
			b.WriteString(r.vars[name])
		}
		s = s[i+3+j:]
		if b.Len() > limit {
			break
		}
	}
	return truncUTF8(b.String(), limit)
}

func (r *runner) expandAll(in []string) []string {
	if !r.s.exts["variables"] {
		return in
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = r.expand(s)
	}
	return out
}

func (r *runner) test(t test) (bool, error) {
	if err := r.step(1); err != nil {
		return false, err
	}
	switch t := t.(type) {
	case tConst:
		return bool(t), nil
	case tNot:
		ok, err := r.test(t.t)
		return !ok, err
	case tList:
		for _, sub := range t.ts {
			ok, err := r.test(sub)
			if err != nil {
				return false, err
			}
			if ok != t.all {
				return ok, nil // anyof: first true; allof: first false
			}
		}
		return t.all, nil
	case tHeader:
		var vals []string
		for _, h := range r.expandAll(t.headers) {
			vals = append(vals, r.msg.values(h)...)
		}
		return r.match(t.m, vals, t.keys)
	case tAddress:
		var vals []string
		for _, h := range r.expandAll(t.headers) {
			for _, raw := range r.msg.rawValues(h) {
				for _, a := range addressesIn(raw) {
					if v, ok := r.addrPart(a, t.part); ok {
						vals = append(vals, v)
					}
				}
			}
		}
		return r.match(t.m, vals, t.keys)
	case tEnvelope:
		var vals []string
		for _, p := range r.expandAll(t.parts) {
			a := r.env.From
			if strings.EqualFold(p, "to") {
				a = r.env.To
			} else if !strings.EqualFold(p, "from") {
				continue
			}
			if a == "" && t.part != "all" {
				// RFC 5228 5.4: the null reverse path has only :all.
				vals = append(vals, "")
				continue
			}
			if v, ok := r.addrPart(a, t.part); ok {
				vals = append(vals, v)
			}
		}
		return r.match(t.m, vals, t.keys)
	case tExists:
		for _, h := range r.expandAll(t.headers) {
			if len(r.msg.rawValues(h)) == 0 {
				return false, nil
			}
		}
		return true, nil
	case tSize:
		size := uint64(r.msg.Size())
		if t.over {
			return size > t.n, nil
		}
		return size < t.n, nil
	case tBody:
		vals, err := r.msg.bodyTexts(t.transform, r.expandAll(t.types), r.s.lim.MaxBodyBytes)
		if err != nil {
			return false, nil // an unparsable body matches nothing
		}
		if t.m.mt == "matches" || t.m.mt == "contains" || t.m.mt == "is" {
			return r.matchNoVars(t.m, vals, t.keys)
		}
		return r.match(t.m, vals, t.keys)
	case tString:
		vals := r.expandAll(t.sources)
		if t.m.mt == "count" {
			var nonEmpty []string
			for _, v := range vals {
				if v != "" {
					nonEmpty = append(nonEmpty, v)
				}
			}
			vals = nonEmpty
		}
		return r.match(t.m, vals, t.keys)
	case tHasFlag:
		var vals []string
		if len(t.vars) == 0 {
			vals = r.flags
		} else {
			for _, v := range r.expandAll(t.vars) {
				vals = append(vals, strings.Fields(r.vars[strings.ToLower(v)])...)
			}
		}
		return r.match(t.m, vals, t.keys)
	case tDate:
		return r.date(t)
	}
	return false, fmt.Errorf("internal error: unknown test %T", t)
}

func (r *runner) addrPart(a string, part string) (string, bool) {
	local, domain := a, ""
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		local, domain = a[:i], a[i+1:]
	}
	switch part {
	case "localpart":
		return local, true
	case "domain":
		return domain, true
	case "user":
		if i := r.detailAt(local); i >= 0 {
			return local[:i], true
		}
		return local, true
	case "detail":
		if i := r.detailAt(local); i >= 0 {
			return local[i+1:], true
		}
		return "", false // RFC 5233 4: no detail, no match
	}
	return a, true
}

// detailAt is the index of the separator before a local part's detail,
// or -1.
func (r *runner) detailAt(local string) int {
	if r.opt.NoSubaddress {
		return -1
	}
	return strings.IndexAny(local, r.opt.SubaddressSep)
}

// match applies m to every value against every key; on a :matches success
// it sets the match variables (RFC 5229 3.2).
func (r *runner) match(m matcher, vals, keys []string) (bool, error) {
	return r.doMatch(m, vals, keys, true)
}

func (r *runner) matchNoVars(m matcher, vals, keys []string) (bool, error) {
	return r.doMatch(m, vals, keys, false)
}

func (r *runner) doMatch(m matcher, vals, keys []string, setVars bool) (bool, error) {
	keys = r.expandAll(keys)
	if m.mt == "count" {
		n := strconv.Itoa(len(vals))
		for _, k := range keys {
			if err := r.step(1); err != nil {
				return false, err
			}
			if relation(compare(m.cmp, n, k), m.rel) {
				return true, nil
			}
		}
		return false, nil
	}
	for _, v := range vals {
		for _, k := range keys {
			if err := r.step(1 + len(v)/256); err != nil {
				return false, err
			}
			switch m.mt {
			case "is":
				if compare(m.cmp, v, k) == 0 {
					return true, nil
				}
			case "contains":
				if strings.Contains(fold(m.cmp, v), fold(m.cmp, k)) {
					return true, nil
				}
			case "value":
				if relation(compare(m.cmp, v, k), m.rel) {
					return true, nil
				}
			case "matches":
				ok, caps, err := r.glob(fold(m.cmp, k), fold(m.cmp, v), v)
				if err != nil {
					return false, err
				}
				if ok {
					if setVars && r.s.exts["variables"] {
						r.mvars = append([]string{v}, caps...)
						if len(r.mvars) > 10 {
							r.mvars = r.mvars[:10]
						}
					}
					return true, nil
				}
			}
		}
	}
	return false, nil
}

func relation(c int, rel string) bool {
	switch rel {
	case "gt":
		return c > 0
	case "ge":
		return c >= 0
	case "lt":
		return c < 0
	case "le":
		return c <= 0
	case "eq":
		return c == 0
	case "ne":
		return c != 0
	}
	return false
}

func fold(cmp, s string) string {
	if cmp != "i;ascii-casemap" {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// compare orders a and b under the comparator: <0, 0 or >0.
func compare(cmp, a, b string) int {
	if cmp == "i;ascii-numeric" {
		return compareNumeric(a, b)
	}
	return strings.Compare(fold(cmp, a), fold(cmp, b))
}

// compareNumeric follows RFC 4790 9.1: the value is the leading digits;
// a string with none is positive infinity.
func compareNumeric(a, b string) int {
	na, nb := leadingDigits(a), leadingDigits(b)
	switch {
	case na == "" && nb == "":
		return 0
	case na == "":
		return 1
	case nb == "":
		return -1
	}
	na, nb = strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
	if len(na) != len(nb) {
		if len(na) < len(nb) {
			return -1
		}
		return 1
	}
	return strings.Compare(na, nb)
}

func leadingDigits(s string) string {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i]
}

// glob matches value against the :matches pattern (both already folded);
// orig is the unfolded value the captures are cut from. Each "*" matches as
// little as possible, except where a later mismatch makes the last one
// grow (RFC 5229 3.2: ${1} of "**" is always empty), in time proportional
// to len(pattern)*len(value), charged to the step budget.
func (r *runner) glob(pattern, value, orig string) (bool, []string, error) {
	type tok struct {
		kind byte // '*', '?', 'c'
		r    rune
		wild int
	}
	var p []tok
	wild := 0
	pr := []rune(pattern)
	for i := 0; i < len(pr); i++ {
		switch pr[i] {
		case '*', '?':
			p = append(p, tok{kind: byte(pr[i]), wild: wild})
			wild++
		case '\\':
			if i+1 < len(pr) {
				i++
			}
			p = append(p, tok{kind: 'c', r: pr[i]})
		default:
			p = append(p, tok{kind: 'c', r: pr[i]})
		}
	}
	s := []rune(value)
	caps := make([][2]int, wild)
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if err := r.step(1); err != nil {
			return false, nil, err
		}
		if pi < len(p) {
			switch t := p[pi]; {
			case t.kind == '?':
				caps[t.wild] = [2]int{si, si + 1}
				pi++
				si++
				continue
			case t.kind == 'c' && t.r == s[si]:
				pi++
				si++
				continue
			case t.kind == '*':
				starP, starS = pi, si
				caps[t.wild] = [2]int{si, si}
				pi++
				continue
			}
		}
		if starP < 0 {
			return false, nil, nil
		}
		starS++
		caps[p[starP].wild][1] = starS
		si, pi = starS, starP+1
	}
	for pi < len(p) && p[pi].kind == '*' {
		caps[p[pi].wild] = [2]int{len(s), len(s)}
		pi++
	}
	if pi != len(p) {
		return false, nil, nil
	}
	// Cut the captures from the original value: folding keeps the rune
	// count, so rune indexes carry over.
	or := []rune(orig)
	if len(or) != len(s) {
		or = s
	}
	out := make([]string, len(caps))
	for i, c := range caps {
		out[i] = string(or[c[0]:c[1]])
	}
	return true, out, nil
}
