package sieve

// The parse tree of RFC 5228 section 8.2:
//
//	command   = identifier arguments (";" / block)
//	arguments = *argument [ test / test-list ]
//	argument  = string-list / number / tag
//	test      = identifier arguments

type argKind int

const (
	argTag argKind = iota
	argNumber
	argStrings // a single string or a string list
)

type arg struct {
	pos    Pos
	kind   argKind
	tag    string
	num    uint64
	strs   []string
	isList bool // written as [ ... ], even with one element
}

type node struct {
	pos   Pos
	name  string
	args  []arg
	tests []*node // the test or the test list
	list  bool    // tests were written as a "(...)" test list
	block []*node
	hasBk bool
}

type parser struct {
	lx    *lexer
	tok   token
	depth int
	lim   Limits
}

func (p *parser) advance() *Error {
	t, err := p.lx.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) expect(k tokKind) *Error {
	if p.tok.kind != k {
		return p.lx.errf(p.tok.pos, "expected %s, found %s", k, p.tok.kind)
	}
	return p.advance()
}

func parse(name, src string, lim Limits) ([]*node, *Error) {
	p := &parser{lx: &lexer{name: name, src: src, line: 1, col: 1}, lim: lim}
	if err := p.advance(); err != nil {
		return nil, err
	}
	cmds, err := p.commands()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		return nil, p.lx.errf(p.tok.pos, "expected a command, found %s", p.tok.kind)
	}
	return cmds, nil
}

func (p *parser) commands() ([]*node, *Error) {
	var cmds []*node
	for p.tok.kind == tIdent {
		c, err := p.command()
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, c)
	}
	return cmds, nil
}

func (p *parser) nest(pos Pos) *Error {
	p.depth++
	if p.depth > p.lim.MaxNesting {
		return p.lx.errf(pos, "nesting deeper than %d levels", p.lim.MaxNesting)
	}
	return nil
}

func (p *parser) command() (*node, *Error) {
	n := &node{pos: p.tok.pos, name: p.tok.text}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if err := p.arguments(n); err != nil {
		return nil, err
	}
	switch p.tok.kind {
	case tSemi:
		return n, p.advance()
	case tLBrace:
		if err := p.nest(p.tok.pos); err != nil {
			return nil, err
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		blk, err := p.commands()
		if err != nil {
			return nil, err
		}
		if err := p.expect(tRBrace); err != nil {
			return nil, err
		}
		p.depth--
		n.block, n.hasBk = blk, true
		return n, nil
	}
	return nil, p.lx.errf(p.tok.pos, `expected ";" or "{" after command %q, found %s`, n.name, p.tok.kind)
}

func (p *parser) arguments(n *node) *Error {
	for {
		t := p.tok
		switch t.kind {
		case tTag:
			n.args = append(n.args, arg{pos: t.pos, kind: argTag, tag: t.text})
			if err := p.advance(); err != nil {
				return err
			}
		case tNumber:
			n.args = append(n.args, arg{pos: t.pos, kind: argNumber, num: t.num})
			if err := p.advance(); err != nil {
				return err
			}
		case tStrTok:
			n.args = append(n.args, arg{pos: t.pos, kind: argStrings, strs: []string{t.text}})
			if err := p.advance(); err != nil {
				return err
			}
		case tLBracket:
			a := arg{pos: t.pos, kind: argStrings, isList: true}
			if err := p.advance(); err != nil {
				return err
			}
			for {
				if p.tok.kind != tStrTok {
					return p.lx.errf(p.tok.pos, "expected a string in the string list, found %s", p.tok.kind)
				}
				a.strs = append(a.strs, p.tok.text)
				if err := p.advance(); err != nil {
					return err
				}
				if p.tok.kind == tRBracket {
					break
				}
				if err := p.expect(tComma); err != nil {
					return err
				}
			}
			n.args = append(n.args, a)
			if err := p.advance(); err != nil {
				return err
			}
		case tIdent:
			if err := p.nest(t.pos); err != nil {
				return err
			}
			tst, err := p.test()
			if err != nil {
				return err
			}
			p.depth--
			n.tests = []*node{tst}
			return nil
		case tLParen:
			if err := p.nest(t.pos); err != nil {
				return err
			}
			n.list = true
			if err := p.advance(); err != nil {
				return err
			}
			for {
				if p.tok.kind != tIdent {
					return p.lx.errf(p.tok.pos, "expected a test, found %s", p.tok.kind)
				}
				tst, err := p.test()
				if err != nil {
					return err
				}
				n.tests = append(n.tests, tst)
				if p.tok.kind == tRParen {
					break
				}
				if err := p.expect(tComma); err != nil {
					return err
				}
			}
			p.depth--
			return p.advance()
		default:
			return nil
		}
	}
}

func (p *parser) test() (*node, *Error) {
	n := &node{pos: p.tok.pos, name: p.tok.text}
	if err := p.advance(); err != nil {
		return nil, err
	}
	return n, p.arguments(n)
}
