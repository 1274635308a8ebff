package sieve

import (
	"fmt"
	"strings"
)

// Pos is a position in a script, 1-based.
type Pos struct {
	Line, Col int
}

// Error is one error in a script, printed as "NAME:LINE:COL: message".
type Error struct {
	Name string
	Pos  Pos
	Msg  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.Name, e.Pos.Line, e.Pos.Col, e.Msg)
}

// ErrorList holds every error found in a script, in source order.
type ErrorList []*Error

func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tTag
	tNumber
	tStrTok
	tLBracket
	tRBracket
	tLParen
	tRParen
	tLBrace
	tRBrace
	tComma
	tSemi
)

func (k tokKind) String() string {
	return [...]string{"end of script", "identifier", "tag", "number", "string",
		`"["`, `"]"`, `"("`, `")"`, `"{"`, `"}"`, `","`, `";"`}[k]
}

type token struct {
	kind tokKind
	pos  Pos
	text string // identifier, tag name (without ':'), string value
	num  uint64
}

type lexer struct {
	name string
	src  string
	off  int
	line int
	col  int
}

func (l *lexer) errf(p Pos, format string, args ...any) *Error {
	return &Error{Name: l.name, Pos: p, Msg: fmt.Sprintf(format, args...)}
}

func (l *lexer) pos() Pos { return Pos{l.line, l.col} }

func (l *lexer) advance(n int) {
	for i := 0; i < n && l.off < len(l.src); i++ {
		if l.src[l.off] == '\n' {
			l.line++
			l.col = 1
		} else {
			l.col++
		}
		l.off++
	}
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// skip skips white space and comments.
func (l *lexer) skip() *Error {
	for l.off < len(l.src) {
		c := l.src[l.off]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			l.advance(1)
		case c == '#':
			for l.off < len(l.src) && l.src[l.off] != '\n' {
				l.advance(1)
			}
		case c == '/' && strings.HasPrefix(l.src[l.off:], "/*"):
			p := l.pos()
			end := strings.Index(l.src[l.off+2:], "*/")
			if end < 0 {
				return l.errf(p, "unterminated comment")
			}
			l.advance(end + 4)
		default:
			return nil
		}
	}
	return nil
}

func (l *lexer) next() (token, *Error) {
	if err := l.skip(); err != nil {
		return token{}, err
	}
	p := l.pos()
	if l.off >= len(l.src) {
		return token{kind: tEOF, pos: p}, nil
	}
	c := l.src[l.off]
	single := map[byte]tokKind{'[': tLBracket, ']': tRBracket, '(': tLParen, ')': tRParen,
		'{': tLBrace, '}': tRBrace, ',': tComma, ';': tSemi}
	if k, ok := single[c]; ok {
		l.advance(1)
		return token{kind: k, pos: p}, nil
	}
	switch {
	case c == '"':
		return l.quoted(p)
	case c == ':':
		l.advance(1)
		if l.off >= len(l.src) || !isAlpha(l.src[l.off]) {
			return token{}, l.errf(p, `expected a tag name after ":"`)
		}
		return token{kind: tTag, pos: p, text: strings.ToLower(l.ident())}, nil
	case isDigit(c):
		return l.number(p)
	case isAlpha(c):
		id := l.ident()
		if strings.EqualFold(id, "text") && l.off < len(l.src) && l.src[l.off] == ':' {
			l.advance(1)
			return l.multiline(p)
		}
		return token{kind: tIdent, pos: p, text: strings.ToLower(id)}, nil
	}
	return token{}, l.errf(p, "unexpected character %q", c)
}

func (l *lexer) ident() string {
	start := l.off
	for l.off < len(l.src) && (isAlpha(l.src[l.off]) || isDigit(l.src[l.off])) {
		l.advance(1)
	}
	return l.src[start:l.off]
}

func (l *lexer) number(p Pos) (token, *Error) {
	var n uint64
	for l.off < len(l.src) && isDigit(l.src[l.off]) {
		d := uint64(l.src[l.off] - '0')
		if n > (1<<63-d)/10 {
			return token{}, l.errf(p, "number too large")
		}
		n = n*10 + d
		l.advance(1)
	}
	if l.off < len(l.src) {
		shift := map[byte]uint{'k': 10, 'K': 10, 'm': 20, 'M': 20, 'g': 30, 'G': 30}[l.src[l.off]]
		if shift > 0 {
			if n > (1<<63)>>shift {
				return token{}, l.errf(p, "number too large")
			}
			n <<= shift
			l.advance(1)
		}
	}
	return token{kind: tNumber, pos: p, num: n}, nil
}

func (l *lexer) quoted(p Pos) (token, *Error) {
	l.advance(1)
	var b strings.Builder
	for {
		if l.off >= len(l.src) {
			return token{}, l.errf(p, "unterminated string")
		}
		c := l.src[l.off]
		switch c {
		case '"':
			l.advance(1)
			return token{kind: tStrTok, pos: p, text: b.String()}, nil
		case '\\':
			if l.off+1 >= len(l.src) {
				return token{}, l.errf(p, "unterminated string")
			}
			// RFC 5228 2.4.2: "\" followed by any character stands for
			// that character.
			b.WriteByte(l.src[l.off+1])
			l.advance(2)
		default:
			b.WriteByte(c)
			l.advance(1)
		}
	}
}

// multiline reads the rest of a "text:" string: white space, an optional
// hash comment, the line break, then dot-stuffed lines up to "." alone.
func (l *lexer) multiline(p Pos) (token, *Error) {
	for l.off < len(l.src) && (l.src[l.off] == ' ' || l.src[l.off] == '\t') {
		l.advance(1)
	}
	if l.off < len(l.src) && l.src[l.off] == '#' {
		for l.off < len(l.src) && l.src[l.off] != '\n' {
			l.advance(1)
		}
	}
	if l.off < len(l.src) && l.src[l.off] == '\r' {
		l.advance(1)
	}
	if l.off >= len(l.src) || l.src[l.off] != '\n' {
		return token{}, l.errf(p, `expected a line break after "text:"`)
	}
	l.advance(1)
	var b strings.Builder
	for {
		if l.off >= len(l.src) {
			return token{}, l.errf(p, `unterminated "text:" string (no line with a single ".")`)
		}
		end := strings.IndexByte(l.src[l.off:], '\n')
		var line string
		if end < 0 {
			line = l.src[l.off:]
			end = len(line)
		} else {
			line = l.src[l.off : l.off+end]
			end++
		}
		line = strings.TrimSuffix(line, "\r")
		l.advance(end)
		if line == "." {
			return token{kind: tStrTok, pos: p, text: b.String()}, nil
		}
		line = strings.TrimPrefix(line, ".")
		b.WriteString(line)
		b.WriteString("\r\n")
	}
}
