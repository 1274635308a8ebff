package sieve

import (
	"fmt"
	"sort"
	"strings"
)

// Limits bound what a script may cost. The zero value of a field means its
// default (DefaultLimits).
type Limits struct {
	MaxScriptBytes   int // size of the script source
	MaxNesting       int // depth of blocks and nested tests
	MaxRedirects     int // redirect actions per message
	MaxActions       int // actions of any kind per message
	MaxSteps         int // basic operations per run (commands, tests, match work)
	MaxVariables     int // distinct variables a run may set
	MaxVariableBytes int // length of one variable's value
	MaxBodyBytes     int // octets of the body a body test looks at
}

// DefaultLimits are the limits used when a field of Limits is zero.
var DefaultLimits = Limits{
	MaxScriptBytes:   64 << 10,
	MaxNesting:       32,
	MaxRedirects:     4,
	MaxActions:       64,
	MaxSteps:         4 << 20,
	MaxVariables:     128,
	MaxVariableBytes: 4096,
	MaxBodyBytes:     1 << 20,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	pick := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	pick(&l.MaxScriptBytes, d.MaxScriptBytes)
	pick(&l.MaxNesting, d.MaxNesting)
	pick(&l.MaxRedirects, d.MaxRedirects)
	pick(&l.MaxActions, d.MaxActions)
	pick(&l.MaxSteps, d.MaxSteps)
	pick(&l.MaxVariables, d.MaxVariables)
	pick(&l.MaxVariableBytes, d.MaxVariableBytes)
	pick(&l.MaxBodyBytes, d.MaxBodyBytes)
	return l
}

// Extensions lists the capability strings accepted by "require".
var Extensions = []string{
	"body", "comparator-i;ascii-casemap", "comparator-i;ascii-numeric",
	"comparator-i;octet", "copy", "date", "envelope", "ereject", "fileinto",
	"imap4flags", "reject", "relational", "subaddress", "vacation", "variables",
}

// Script is a compiled script, safe for concurrent runs.
type Script struct {
	name string
	cmds []cmd
	exts map[string]bool
	lim  Limits
}

// Name is the name the script was compiled under (used in errors).
func (s *Script) Name() string { return s.name }

// Compile parses and validates a script with the default limits. The
// error, if any, is an ErrorList.
func Compile(name, src string) (*Script, error) {
	return CompileLimits(name, src, Limits{})
}

// CompileLimits is Compile with explicit limits.
func CompileLimits(name, src string, lim Limits) (*Script, error) {
	lim = lim.withDefaults()
	if len(src) > lim.MaxScriptBytes {
		return nil, ErrorList{{Name: name, Pos: Pos{1, 1},
			Msg: fmt.Sprintf("script is %d bytes, more than the limit of %d", len(src), lim.MaxScriptBytes)}}
	}
	tree, perr := parse(name, src, lim)
	if perr != nil {
		return nil, ErrorList{perr}
	}
	c := &compiler{name: name, exts: map[string]bool{}}
	cmds := c.block(tree, true)
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	return &Script{name: name, cmds: cmds, exts: c.exts, lim: lim}, nil
}

type compiler struct {
	name string
	exts map[string]bool
	errs ErrorList
}

func (c *compiler) errf(p Pos, format string, args ...any) {
	c.errs = append(c.errs, &Error{Name: c.name, Pos: p, Msg: fmt.Sprintf(format, args...)})
}

func (c *compiler) need(p Pos, ext, what string) bool {
	if c.exts[ext] {
		return true
	}
	c.errf(p, "%s needs require %q", what, ext)
	return false
}

// Argument signatures.

type valType int

const (
	vNone valType = iota
	vString
	vList
	vNumber
)

func (v valType) String() string {
	return [...]string{"nothing", "a string", "a string list", "a number"}[v]
}

type tagDef struct {
	val   valType
	ext   string
	group string
}

var (
	matchTags = map[string]tagDef{
		"comparator": {val: vString, group: "comparator"},
		"is":         {group: "match type"},
		"contains":   {group: "match type"},
		"matches":    {group: "match type"},
		"value":      {val: vString, ext: "relational", group: "match type"},
		"count":      {val: vString, ext: "relational", group: "match type"},
	}
	addrTags = map[string]tagDef{
		"all":       {group: "address part"},
		"localpart": {group: "address part"},
		"domain":    {group: "address part"},
		"user":      {ext: "subaddress", group: "address part"},
		"detail":    {ext: "subaddress", group: "address part"},
	}
)

func merge(ms ...map[string]tagDef) map[string]tagDef {
	out := map[string]tagDef{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

type parsedArgs struct {
	tags map[string]arg // tag name -> its value (or the tag itself)
	pos  []arg
}

func (p parsedArgs) has(t string) bool { _, ok := p.tags[t]; return ok }
func (p parsedArgs) str(t string) string {
	if a, ok := p.tags[t]; ok && len(a.strs) > 0 {
		return a.strs[0]
	}
	return ""
}

// args checks n's arguments against tags and the positional types pos; the
// first minPos of pos are required, the first len(pos)-minPos optional ones
// are the leading positions that may be left out.
func (c *compiler) args(n *node, tags map[string]tagDef, pos []valType, minPos int) (parsedArgs, bool) {
	out := parsedArgs{tags: map[string]arg{}}
	ok := true
	groups := map[string]string{}
	i := 0
	for ; i < len(n.args) && n.args[i].kind == argTag; i++ {
		a := n.args[i]
		def, known := tags[a.tag]
		if !known {
			c.errf(a.pos, "%s: unknown tag :%s", n.name, a.tag)
			ok = false
			continue
		}
		if def.ext != "" && !c.need(a.pos, def.ext, ":"+a.tag) {
			ok = false
		}
		if _, dup := out.tags[a.tag]; dup {
			c.errf(a.pos, "%s: tag :%s given twice", n.name, a.tag)
			ok = false
		}
		if def.group != "" {
			if prev, clash := groups[def.group]; clash && prev != a.tag {
				c.errf(a.pos, "%s: :%s and :%s are both a %s", n.name, prev, a.tag, def.group)
				ok = false
			}
			groups[def.group] = a.tag
		}
		if def.val != vNone {
			if i+1 >= len(n.args) || !c.fits(n.args[i+1], def.val) {
				c.errf(a.pos, "%s: :%s must be followed by %s", n.name, a.tag, def.val)
				ok = false
				out.tags[a.tag] = a
				continue
			}
			i++
			v := n.args[i]
			out.tags[a.tag] = v
			continue
		}
		out.tags[a.tag] = a
	}
	rest := n.args[i:]
	for _, a := range rest {
		if a.kind == argTag {
			c.errf(a.pos, "%s: tag :%s must come before the other arguments", n.name, a.tag)
			return out, false
		}
	}
	if len(rest) < minPos || len(rest) > len(pos) {
		if minPos == len(pos) {
			c.errf(n.pos, "%s: takes %d positional arguments, found %d", n.name, len(pos), len(rest))
		} else {
			c.errf(n.pos, "%s: takes %d to %d positional arguments, found %d", n.name, minPos, len(pos), len(rest))
		}
		return out, false
	}
	types := pos[len(pos)-len(rest):]
	for j, a := range rest {
		if !c.fits(a, types[j]) {
			c.errf(a.pos, "%s: argument %d must be %s", n.name, j+1, types[j])
			ok = false
		}
	}
	out.pos = rest
	return out, ok
}

func (c *compiler) fits(a arg, t valType) bool {
	switch t {
	case vString:
		return a.kind == argStrings && !a.isList && len(a.strs) == 1
	case vList:
		return a.kind == argStrings
	case vNumber:
		return a.kind == argNumber
	}
	return false
}

func (c *compiler) noTests(n *node) bool {
	if len(n.tests) > 0 {
		c.errf(n.tests[0].pos, "%s: takes no test", n.name)
		return false
	}
	return true
}

// block compiles a command list; top is true at the top level, where
// "require" may open the script.
func (c *compiler) block(ns []*node, top bool) []cmd {
	var out []cmd
	requireOK := top
	for i := 0; i < len(ns); i++ {
		n := ns[i]
		if n.name == "require" {
			if !requireOK {
				c.errf(n.pos, "require must come before any other command")
			}
			c.require(n)
			continue
		}
		requireOK = false
		if n.name == "if" {
			ci := &cIf{}
			c.branch(ci, n)
			for i+1 < len(ns) && (ns[i+1].name == "elsif" || ns[i+1].name == "else") {
				i++
				c.branch(ci, ns[i])
				if ns[i].name == "else" {
					break
				}
			}
			out = append(out, ci)
			continue
		}
		if n.name == "elsif" || n.name == "else" {
			c.errf(n.pos, "%s without a preceding if", n.name)
			continue
		}
		if n.hasBk {
			c.errf(n.pos, "%s: takes no block", n.name)
		}
		if x := c.command(n); x != nil {
			out = append(out, x)
		}
	}
	return out
}

func (c *compiler) require(n *node) {
	a, ok := c.args(n, nil, []valType{vList}, 1)
	if !c.noTests(n) || !ok {
		return
	}
	for _, e := range a.pos[0].strs {
		i := sort.SearchStrings(Extensions, e)
		if i >= len(Extensions) || Extensions[i] != e {
			c.errf(a.pos[0].pos, "require: unsupported extension %q", e)
			continue
		}
		c.exts[e] = true
	}
}

func (c *compiler) branch(ci *cIf, n *node) {
	if !n.hasBk {
		c.errf(n.pos, "%s: needs a block", n.name)
	}
	body := c.block(n.block, false)
	if n.name == "else" {
		if len(n.args) > 0 || len(n.tests) > 0 {
			c.errf(n.pos, "else: takes no arguments")
		}
		ci.conds = append(ci.conds, nil)
		ci.bodies = append(ci.bodies, body)
		return
	}
	if len(n.args) > 0 {
		c.errf(n.args[0].pos, "%s: takes a test, not arguments", n.name)
	}
	if len(n.tests) != 1 || n.list {
		c.errf(n.pos, "%s: needs exactly one test", n.name)
		return
	}
	t := c.test(n.tests[0])
	if t == nil {
		return
	}
	ci.conds = append(ci.conds, t)
	ci.bodies = append(ci.bodies, body)
}

var flagsTag = map[string]tagDef{"flags": {val: vList, ext: "imap4flags"}}
var copyTag = map[string]tagDef{"copy": {ext: "copy"}}

func (c *compiler) command(n *node) cmd {
	noArgs := func() bool {
		_, ok := c.args(n, nil, nil, 0)
		return c.noTests(n) && ok
	}
	switch n.name {
	case "stop":
		if noArgs() {
			return cStop{}
		}
	case "discard":
		if noArgs() {
			return cDiscard{}
		}
	case "keep":
		a, ok := c.args(n, flagsTag, nil, 0)
		if c.noTests(n) && ok {
			k := cKeep{}
			if f, has := a.tags["flags"]; has {
				k.flags, k.hasFlags = f.strs, true
			}
			return k
		}
	case "fileinto":
		if !c.need(n.pos, "fileinto", "fileinto") {
			return nil
		}
		a, ok := c.args(n, merge(flagsTag, copyTag), []valType{vString}, 1)
		if c.noTests(n) && ok {
			f := cFileInto{mailbox: a.pos[0].strs[0], copy: a.has("copy")}
			if fl, has := a.tags["flags"]; has {
				f.flags, f.hasFlags = fl.strs, true
			}
			return f
		}
	case "redirect":
		a, ok := c.args(n, copyTag, []valType{vString}, 1)
		if c.noTests(n) && ok {
			addr := a.pos[0].strs[0]
			if !c.exts["variables"] || !strings.Contains(addr, "${") {
				if _, err := parseMailbox(addr); err != nil {
					c.errf(a.pos[0].pos, "redirect: %q is not a valid address", addr)
					return nil
				}
			}
			return cRedirect{addr: addr, copy: a.has("copy")}
		}
	case "reject", "ereject":
		if !c.need(n.pos, n.name, n.name) {
			return nil
		}
		a, ok := c.args(n, nil, []valType{vString}, 1)
		if c.noTests(n) && ok {
			return cReject{reason: a.pos[0].strs[0], ext: n.name == "ereject"}
		}
	case "vacation":
		return c.vacation(n)
	case "setflag", "addflag", "removeflag":
		if !c.need(n.pos, "imap4flags", n.name) {
			return nil
		}
		a, ok := c.args(n, nil, []valType{vString, vList}, 1)
		if c.noTests(n) && ok {
			f := cFlag{op: n.name, flags: a.pos[len(a.pos)-1].strs}
			if len(a.pos) == 2 {
				if !c.need(a.pos[0].pos, "variables", "a flag variable") {
					return nil
				}
				f.varname = strings.ToLower(a.pos[0].strs[0])
				if !validVarName(f.varname) {
					c.errf(a.pos[0].pos, "%s: %q is not a variable name", n.name, f.varname)
					return nil
				}
			}
			return f
		}
	case "set":
		return c.set(n)
	default:
		c.errf(n.pos, "unknown command %q", n.name)
	}
	return nil
}

func (c *compiler) vacation(n *node) cmd {
	if !c.need(n.pos, "vacation", "vacation") {
		return nil
	}
	tags := map[string]tagDef{
		"days": {val: vNumber}, "subject": {val: vString}, "from": {val: vString},
		"addresses": {val: vList}, "mime": {}, "handle": {val: vString},
	}
	a, ok := c.args(n, tags, []valType{vString}, 1)
	if !c.noTests(n) || !ok {
		return nil
	}
	v := cVacation{days: 7, reason: a.pos[0].strs[0], mime: a.has("mime"),
		subject: a.str("subject"), from: a.str("from"), handle: a.str("handle")}
	if d, has := a.tags["days"]; has {
		v.days = int(min(d.num, 365))
		if v.days < 1 {
			v.days = 1
		}
	}
	if ad, has := a.tags["addresses"]; has {
		v.addresses = ad.strs
	}
	if v.from != "" && !strings.Contains(v.from, "${") {
		if _, err := parseMailbox(v.from); err != nil {
			c.errf(a.tags["from"].pos, "vacation: :from %q is not a valid address", v.from)
			return nil
		}
	}
	return v
}

var setMods = map[string]tagDef{
	"lower": {group: "case modifier"}, "upper": {group: "case modifier"},
	"lowerfirst": {group: "first-letter modifier"}, "upperfirst": {group: "first-letter modifier"},
	"quotewildcard": {}, "length": {},
}

func (c *compiler) set(n *node) cmd {
	if !c.need(n.pos, "variables", "set") {
		return nil
	}
	a, ok := c.args(n, setMods, []valType{vString, vString}, 2)
	if !c.noTests(n) || !ok {
		return nil
	}
	name := strings.ToLower(a.pos[0].strs[0])
	if !validVarName(name) || isDigit(name[0]) {
		c.errf(a.pos[0].pos, "set: %q is not a variable name", a.pos[0].strs[0])
		return nil
	}
	s := cSet{name: name, value: a.pos[1].strs[0]}
	// RFC 5229 4.1: modifiers apply from the highest precedence down.
	for _, m := range []string{"lower", "upper", "lowerfirst", "upperfirst", "quotewildcard", "length"} {
		if a.has(m) {
			s.mods = append(s.mods, m)
		}
	}
	return s
}

func validVarName(s string) bool {
	if s == "" {
		return false
	}
	if isDigit(s[0]) {
		for i := 0; i < len(s); i++ {
			if !isDigit(s[i]) {
				return false
			}
		}
		return true
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" || !isAlpha(part[0]) {
			return false
		}
		for i := 0; i < len(part); i++ {
			if !isAlpha(part[i]) && !isDigit(part[i]) {
				return false
			}
		}
	}
	return true
}

// matcher is the compiled COMPARATOR and MATCH-TYPE of a test.
type matcher struct {
	cmp string // i;octet, i;ascii-casemap, i;ascii-numeric
	mt  string // is, contains, matches, value, count
	rel string // gt ge lt le eq ne, for value and count
}

func (c *compiler) matcher(n *node, a parsedArgs) (matcher, bool) {
	m := matcher{cmp: "i;ascii-casemap", mt: "is"}
	for _, t := range []string{"is", "contains", "matches", "value", "count"} {
		if a.has(t) {
			m.mt = t
		}
	}
	if cm, has := a.tags["comparator"]; has {
		m.cmp = strings.ToLower(cm.strs[0])
		switch m.cmp {
		case "i;octet", "i;ascii-casemap":
		case "i;ascii-numeric":
			if !c.need(cm.pos, "comparator-i;ascii-numeric", "comparator i;ascii-numeric") {
				return m, false
			}
			if m.mt == "contains" || m.mt == "matches" {
				c.errf(cm.pos, "%s: comparator i;ascii-numeric cannot do :%s", n.name, m.mt)
				return m, false
			}
		default:
			c.errf(cm.pos, "%s: unsupported comparator %q", n.name, cm.strs[0])
			return m, false
		}
	}
	if m.mt == "value" || m.mt == "count" {
		r := a.tags[m.mt]
		m.rel = strings.ToLower(r.strs[0])
		switch m.rel {
		case "gt", "ge", "lt", "le", "eq", "ne":
		default:
			c.errf(r.pos, "%s: %q is not a relational operator (gt, ge, lt, le, eq, ne)", n.name, r.strs[0])
			return m, false
		}
	}
	return m, true
}

func addrPart(a parsedArgs) string {
	for _, t := range []string{"localpart", "domain", "user", "detail"} {
		if a.has(t) {
			return t
		}
	}
	return "all"
}

var dateParts = map[string]bool{"year": true, "month": true, "day": true, "date": true,
	"julian": true, "hour": true, "minute": true, "second": true, "time": true,
	"iso8601": true, "std11": true, "zone": true, "weekday": true}

func (c *compiler) test(n *node) test {
	if n.hasBk {
		c.errf(n.pos, "%s: a test takes no block", n.name)
	}
	list := func() []test {
		var ts []test
		okAll := true
		for _, sub := range n.tests {
			t := c.test(sub)
			if t == nil {
				okAll = false
			}
			ts = append(ts, t)
		}
		if !okAll {
			return nil
		}
		return ts
	}
	switch n.name {
	case "true", "false":
		_, ok := c.args(n, nil, nil, 0)
		if c.noTests(n) && ok {
			return tConst(n.name == "true")
		}
	case "not":
		if _, ok := c.args(n, nil, nil, 0); !ok {
			return nil
		}
		if len(n.tests) != 1 || n.list {
			c.errf(n.pos, "not: needs exactly one test")
			return nil
		}
		if t := c.test(n.tests[0]); t != nil {
			return tNot{t}
		}
	case "allof", "anyof":
		if _, ok := c.args(n, nil, nil, 0); !ok {
			return nil
		}
		if !n.list || len(n.tests) == 0 {
			c.errf(n.pos, "%s: needs a test list in parentheses", n.name)
			return nil
		}
		if ts := list(); ts != nil {
			return tList{all: n.name == "allof", ts: ts}
		}
	case "header":
		a, ok := c.args(n, matchTags, []valType{vList, vList}, 2)
		m, mok := c.matcher(n, a)
		if c.noTests(n) && ok && mok {
			return tHeader{m: m, headers: lowerAll(a.pos[0].strs), keys: a.pos[1].strs}
		}
	case "address":
		a, ok := c.args(n, merge(matchTags, addrTags), []valType{vList, vList}, 2)
		m, mok := c.matcher(n, a)
		if c.noTests(n) && ok && mok {
			return tAddress{m: m, part: addrPart(a), headers: lowerAll(a.pos[0].strs), keys: a.pos[1].strs}
		}
	case "envelope":
		if !c.need(n.pos, "envelope", "envelope") {
			return nil
		}
		a, ok := c.args(n, merge(matchTags, addrTags), []valType{vList, vList}, 2)
		m, mok := c.matcher(n, a)
		if !c.noTests(n) || !ok || !mok {
			return nil
		}
		parts := lowerAll(a.pos[0].strs)
		for _, p := range parts {
			if p != "from" && p != "to" && !strings.Contains(p, "${") {
				c.errf(a.pos[0].pos, "envelope: unknown envelope part %q (from, to)", p)
				return nil
			}
		}
		return tEnvelope{m: m, part: addrPart(a), parts: parts, keys: a.pos[1].strs}
	case "exists":
		a, ok := c.args(n, nil, []valType{vList}, 1)
		if c.noTests(n) && ok {
			return tExists{headers: lowerAll(a.pos[0].strs)}
		}
	case "size":
		a, ok := c.args(n, map[string]tagDef{"over": {group: "size"}, "under": {group: "size"}}, []valType{vNumber}, 1)
		if c.noTests(n) && ok {
			if !a.has("over") && !a.has("under") {
				c.errf(n.pos, "size: needs :over or :under")
				return nil
			}
			return tSize{over: a.has("over"), n: a.pos[0].num}
		}
	case "body":
		if !c.need(n.pos, "body", "body") {
			return nil
		}
		tags := merge(matchTags, map[string]tagDef{"raw": {group: "transform"},
			"content": {val: vList, group: "transform"}, "text": {group: "transform"}})
		a, ok := c.args(n, tags, []valType{vList}, 1)
		m, mok := c.matcher(n, a)
		if c.noTests(n) && ok && mok {
			b := tBody{m: m, transform: "text", keys: a.pos[0].strs}
			if a.has("raw") {
				b.transform = "raw"
			}
			if ct, has := a.tags["content"]; has {
				b.transform, b.types = "content", lowerAll(ct.strs)
			}
			return b
		}
	case "string":
		if !c.need(n.pos, "variables", "string") {
			return nil
		}
		a, ok := c.args(n, matchTags, []valType{vList, vList}, 2)
		m, mok := c.matcher(n, a)
		if c.noTests(n) && ok && mok {
			return tString{m: m, sources: a.pos[0].strs, keys: a.pos[1].strs}
		}
	case "hasflag":
		if !c.need(n.pos, "imap4flags", "hasflag") {
			return nil
		}
		a, ok := c.args(n, matchTags, []valType{vList, vList}, 1)
		m, mok := c.matcher(n, a)
		if !c.noTests(n) || !ok || !mok {
			return nil
		}
		h := tHasFlag{m: m, keys: a.pos[len(a.pos)-1].strs}
		if len(a.pos) == 2 {
			if !c.need(a.pos[0].pos, "variables", "a flag variable") {
				return nil
			}
			h.vars = lowerAll(a.pos[0].strs)
		}
		return h
	case "date", "currentdate":
		if !c.need(n.pos, "date", n.name) {
			return nil
		}
		tags := merge(matchTags, map[string]tagDef{"zone": {val: vString, group: "zone"}})
		pos := []valType{vString, vList}
		if n.name == "date" {
			tags["originalzone"] = tagDef{group: "zone"}
			pos = []valType{vString, vString, vList}
		}
		a, ok := c.args(n, tags, pos, len(pos))
		m, mok := c.matcher(n, a)
		if !c.noTests(n) || !ok || !mok {
			return nil
		}
		d := tDate{m: m, current: n.name == "currentdate", orig: a.has("originalzone")}
		if z, has := a.tags["zone"]; has {
			loc, err := parseZone(z.strs[0])
			if err != nil {
				c.errf(z.pos, "%s: %v", n.name, err)
				return nil
			}
			d.zone = loc
		}
		i := 0
		if !d.current {
			d.header = strings.ToLower(a.pos[0].strs[0])
			i = 1
		}
		d.part = strings.ToLower(a.pos[i].strs[0])
		if !dateParts[d.part] {
			c.errf(a.pos[i].pos, "%s: unknown date part %q", n.name, a.pos[i].strs[0])
			return nil
		}
		d.keys = a.pos[i+1].strs
		return d
	default:
		c.errf(n.pos, "unknown test %q", n.name)
	}
	return nil
}

func lowerAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strings.ToLower(v)
	}
	return out
}
