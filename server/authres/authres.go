// Package authres parses the Authentication-Results header field
// (RFC 8601). The server's inbound checks read the fields that a trusted
// relay added, and mailctl verify reads the field the server added to a
// test message; both use this one parser, a leaf that the provisioner may
// import (internal/archtest).
//
// go-msgauth/authres (a dependency already) did not fit: its parser splits
// the value on every ";" and on white space, so a comment or a quoted
// string holding either ("(comment; with semicolon)", reason="a b")
// breaks it, and it keeps comments as values.
package authres

import (
	"errors"
	"fmt"
	"strings"
)

// Result is one method result of an Authentication-Results field
// (RFC 8601 section 2.2): "spf=pass smtp.mailfrom=a@b.example".
type Result struct {
	Method string // lower case: spf, dkim, dmarc, iprev, ...
	Value  string // lower case: pass, fail, none, ...
	// Reason is the reason= text, if any.
	Reason string
	// Props holds the properties ("smtp.mailfrom", "header.d", ...).
	Props map[string]string
}

// ErrSyntax is returned for an Authentication-Results value that does not
// follow RFC 8601.
var ErrSyntax = errors.New("authres: Authentication-Results syntax error")

// Parse parses the value of an Authentication-Results field:
// the authserv-id, an optional version, then ";"-separated results or
// "none". Comments (nested parentheses) are ignored; values may be quoted
// strings.
func Parse(v string) (authservID string, results []Result, err error) {
	toks, err := tokenize(v)
	if err != nil {
		return "", nil, err
	}
	if len(toks) == 0 || toks[0].kind != tokWord {
		return "", nil, ErrSyntax
	}
	authservID = toks[0].s
	i := 1
	if i < len(toks) && toks[i].kind == tokWord {
		if toks[i].s != "1" {
			return authservID, nil, fmt.Errorf("%w: version %q", ErrSyntax, toks[i].s)
		}
		i++
	}
	for i < len(toks) {
		if toks[i].kind != tokSemi {
			return authservID, results, fmt.Errorf("%w: expected ';'", ErrSyntax)
		}
		i++
		if i >= len(toks) {
			break // a trailing ";" is tolerated
		}
		if toks[i].kind == tokWord && strings.EqualFold(toks[i].s, "none") && (i+1 == len(toks) || toks[i+1].kind == tokSemi) {
			i++
			continue
		}
		// method [ "/" version ] "=" value
		if i+2 >= len(toks) || toks[i].kind != tokWord || toks[i+1].kind != tokEq || toks[i+2].kind != tokWord {
			return authservID, results, fmt.Errorf("%w: expected method=result", ErrSyntax)
		}
		method, _, _ := strings.Cut(toks[i].s, "/")
		if method == "" {
			return authservID, results, fmt.Errorf("%w: empty method name", ErrSyntax)
		}
		r := Result{Method: strings.ToLower(method), Value: strings.ToLower(toks[i+2].s), Props: map[string]string{}}
		i += 3
		for i < len(toks) && toks[i].kind != tokSemi {
			if i+2 >= len(toks) || toks[i].kind != tokWord || toks[i+1].kind != tokEq || toks[i+2].kind != tokWord {
				return authservID, results, fmt.Errorf("%w: expected property=value", ErrSyntax)
			}
			k := strings.ToLower(toks[i].s)
			if k == "reason" {
				r.Reason = toks[i+2].s
			} else {
				r.Props[k] = toks[i+2].s
			}
			i += 3
		}
		results = append(results, r)
	}
	return authservID, results, nil
}

type tokKind int

const (
	tokWord tokKind = iota
	tokEq
	tokSemi
)

type token struct {
	kind tokKind
	s    string
}

// tokenize splits on CFWS, "=" and ";"; quoted strings are one word.
func tokenize(v string) ([]token, error) {
	var out []token
	i := 0
	for i < len(v) {
		c := v[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '(':
			depth := 0
			for ; i < len(v); i++ {
				if v[i] == '\\' {
					i++
					continue
				}
				if v[i] == '(' {
					depth++
				} else if v[i] == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			if depth != 0 {
				return nil, fmt.Errorf("%w: unterminated comment", ErrSyntax)
			}
			i++
		case c == '"':
			var b strings.Builder
			i++
			closed := false
			for ; i < len(v); i++ {
				if v[i] == '\\' && i+1 < len(v) {
					i++
					b.WriteByte(v[i])
					continue
				}
				if v[i] == '"' {
					closed = true
					i++
					break
				}
				b.WriteByte(v[i])
			}
			if !closed {
				return nil, fmt.Errorf("%w: unterminated quoted string", ErrSyntax)
			}
			out = append(out, token{tokWord, b.String()})
		case c == ')':
			return nil, fmt.Errorf("%w: unbalanced ')'", ErrSyntax)
		case c == '=':
			out = append(out, token{kind: tokEq})
			i++
		case c == ';':
			out = append(out, token{kind: tokSemi})
			i++
		default:
			j := i
			for j < len(v) && !strings.ContainsRune(" \t\r\n()\";=", rune(v[j])) {
				j++
			}
			out = append(out, token{tokWord, v[i:j]})
			i = j
		}
	}
	return out, nil
}
