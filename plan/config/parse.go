package config

import (
	"bytes"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Why a file is parsed in pieces: hclsyntax lexes a whole file into one
// token slice before parsing it. For a configuration of thousands of
// domains and users (megabytes of HCL) that slice is hundreds of MiB,
// regrown by copying and scanned by every GC cycle while it lives: it was
// most of the time and memory of a plan. The blocks of a file are
// independent, so the file is cut between top-level blocks into pieces of
// about PieceSize bytes, each parsed on its own (its tokens die with it)
// at its true position, and the pieces' bodies are joined. A file whose
// pieces do not all parse cleanly is parsed whole again, so that its
// diagnostics are exactly those of one parse.

// PieceSize is the size above which a piece of a file is cut at the next
// end of a top-level block.
const PieceSize = 16 << 10

// Piece is a part of a source file that starts at a top-level item.
type Piece struct {
	Src   []byte
	Start hcl.Pos
}

// SplitTopLevel cuts src after ends of top-level blocks (a "}" that closes
// a block at the file's top level, then its line end) into pieces of at
// least about size bytes. Strings, heredocs, comments and template
// interpolations are skipped as the HCL native syntax defines them, so a
// "}" inside one never cuts. A source it cannot follow is one piece.
func SplitTopLevel(src []byte, size int) []Piece {
	var out []Piece
	start := hcl.Pos{Line: 1, Column: 1, Byte: 0}
	s := scanner{src: src, line: 1}
	for {
		end, ok := s.nextBlockEnd()
		if !ok {
			break
		}
		if end-start.Byte < size {
			continue
		}
		out = append(out, Piece{Src: src[start.Byte:end], Start: start})
		start = hcl.Pos{Line: s.line, Column: 1, Byte: end}
	}
	if start.Byte < len(src) || len(out) == 0 {
		out = append(out, Piece{Src: src[start.Byte:], Start: start})
	}
	return out
}

// scanner follows the nesting of HCL native syntax well enough to find the
// ends of top-level blocks. It does not validate: the parser does.
type scanner struct {
	src   []byte
	i     int
	line  int // line of src[i]
	depth int // open (, [ and { outside strings
	last  byte
	fail  bool
}

// nextBlockEnd advances past the next line end that follows a "}" closing
// a top-level block, and returns the offset after it.
func (s *scanner) nextBlockEnd() (int, bool) {
	for !s.fail && s.i < len(s.src) {
		c := s.src[s.i]
		switch {
		case c == '\n':
			s.i++
			s.line++
			if s.depth == 0 && s.last == '}' {
				s.last = '\n'
				return s.i, true
			}
			s.last = '\n'
		case c == '#' || c == '/' && s.peek(1) == '/':
			s.lineComment()
		case c == '/' && s.peek(1) == '*':
			s.blockComment()
		case c == '"':
			s.i++
			s.quoted()
			s.last = '"'
		case c == '<' && s.peek(1) == '<' && s.heredocStart():
			s.last = '"'
		case c == '{' || c == '(' || c == '[':
			s.depth++
			s.i++
			s.last = c
		case c == '}' || c == ')' || c == ']':
			s.depth--
			if s.depth < 0 {
				s.fail = true
			}
			s.i++
			s.last = c
		case c == ' ' || c == '\t' || c == '\r':
			s.i++
		default:
			s.i++
			s.last = c
		}
	}
	return 0, false
}

func (s *scanner) peek(n int) byte {
	if s.i+n < len(s.src) {
		return s.src[s.i+n]
	}
	return 0
}

// lineComment skips to the line end, leaving it to be read: a line
// comment ends its line as a newline does.
func (s *scanner) lineComment() {
	for s.i < len(s.src) && s.src[s.i] != '\n' {
		s.i++
	}
}

func (s *scanner) blockComment() {
	end := bytes.Index(s.src[s.i+2:], []byte("*/"))
	if end < 0 {
		s.fail = true
		return
	}
	s.line += bytes.Count(s.src[s.i:s.i+2+end], []byte("\n"))
	s.i += 2 + end + 2
}

// quoted skips a quoted template whose opening quote was read, with its
// escapes and interpolations.
func (s *scanner) quoted() {
	for s.i < len(s.src) {
		c := s.src[s.i]
		switch {
		case c == '\\':
			s.i += 2
		case c == '"':
			s.i++
			return
		case c == '\n':
			s.fail = true // not valid HCL: leave it to the parser
			return
		case (c == '$' || c == '%') && s.peek(1) == c && s.peek(2) == '{':
			s.i += 3 // $${ and %%{ are literal
		case (c == '$' || c == '%') && s.peek(1) == '{':
			s.i += 2
			s.interpolation()
		default:
			s.i++
		}
	}
	s.fail = true
}

// interpolation skips a template sequence whose "${" or "%{" was read, up
// to its closing brace; it may hold strings, braces and line ends.
func (s *scanner) interpolation() {
	depth := 0
	for s.i < len(s.src) && !s.fail {
		c := s.src[s.i]
		switch {
		case c == '\n':
			s.line++
			s.i++
		case c == '"':
			s.i++
			s.quoted()
		case c == '#' || c == '/' && s.peek(1) == '/':
			s.lineComment()
		case c == '/' && s.peek(1) == '*':
			s.blockComment()
		case c == '<' && s.peek(1) == '<' && s.heredocStart():
		case c == '{' || c == '(' || c == '[':
			depth++
			s.i++
		case c == '}' && depth == 0:
			s.i++
			return
		case c == '}' || c == ')' || c == ']':
			depth--
			s.i++
		default:
			s.i++
		}
	}
	s.fail = true
}

// heredocStart skips a heredoc (<<EOT or <<-EOT, its lines, and the line
// of its closing marker up to the line end) and reports whether there was
// one at s.i.
func (s *scanner) heredocStart() bool {
	j := s.i + 2
	if j < len(s.src) && s.src[j] == '-' {
		j++
	}
	k := j
	for k < len(s.src) && isIdentByte(s.src[k], k == j) {
		k++
	}
	if k == j {
		return false
	}
	marker := s.src[j:k]
	for k < len(s.src) && (s.src[k] == ' ' || s.src[k] == '\t' || s.src[k] == '\r') {
		k++
	}
	if k >= len(s.src) || s.src[k] != '\n' {
		return false
	}
	// Each following line until one that is the marker (spaces aside).
	pos := k + 1
	s.line++
	for pos < len(s.src) {
		eol := bytes.IndexByte(s.src[pos:], '\n')
		lineEnd := len(s.src)
		if eol >= 0 {
			lineEnd = pos + eol
		}
		if bytes.Equal(bytes.TrimSpace(s.src[pos:lineEnd]), marker) {
			// The marker's line end is read by the caller's loop.
			s.i = pos + bytes.Index(s.src[pos:lineEnd], marker) + len(marker)
			return true
		}
		if eol < 0 {
			break
		}
		pos = lineEnd + 1
		s.line++
	}
	s.fail = true
	s.i = len(s.src)
	return true
}

func isIdentByte(c byte, first bool) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' ||
		!first && (c >= '0' && c <= '9' || c == '-') || c >= 0x80
}

// ParseFile parses src as hclsyntax.ParseConfig(src, name, hcl.InitialPos)
// does, with the same result and diagnostics, in pieces of about
// PieceSize bytes (see SplitTopLevel) so that no token slice of the whole
// file is ever held.
func ParseFile(src []byte, name string) (*hcl.File, hcl.Diagnostics) {
	return parseFile(src, name, PieceSize)
}

// FormatFile parses src as ParseFile does and, when it parses, returns it
// in the canonical layout of hclwrite.Format, formatted piece by piece as
// each piece is parsed: no token slice or syntax tree of more than one
// piece is held (the syntax trees of all pieces, kept until the end of
// the parse, were most of the memory of fmt -check on a large file). A
// file whose pieces do not all parse cleanly is parsed, and formatted,
// whole; one that does not parse is returned as nil with its diagnostics.
func FormatFile(src []byte, name string) ([]byte, hcl.Diagnostics) {
	pieces := SplitTopLevel(src, PieceSize)
	if len(pieces) > 1 {
		var out bytes.Buffer
		out.Grow(len(src) + len(src)/8)
		attrs := map[string]bool{}
		clean := true
	Pieces:
		for _, p := range pieces {
			f, diags := hclsyntax.ParseConfig(p.Src, name, p.Start)
			if len(diags) > 0 {
				clean = false
				break
			}
			for n := range f.Body.(*hclsyntax.Body).Attributes {
				if attrs[n] {
					clean = false // one parse reports the duplicate
					break Pieces
				}
				attrs[n] = true
			}
			out.Write(hclwrite.Format(p.Src))
		}
		if clean {
			return out.Bytes(), nil
		}
	}
	_, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	return hclwrite.Format(src), diags
}

// parseFile parses src in pieces of about size bytes, or whole when a
// piece does not parse cleanly.
func parseFile(src []byte, name string, size int) (*hcl.File, hcl.Diagnostics) {
	whole := func() (*hcl.File, hcl.Diagnostics) {
		return hclsyntax.ParseConfig(src, name, hcl.InitialPos)
	}
	pieces := SplitTopLevel(src, size)
	if len(pieces) == 1 {
		return whole()
	}
	body := &hclsyntax.Body{Attributes: hclsyntax.Attributes{}}
	for i, p := range pieces {
		f, diags := hclsyntax.ParseConfig(p.Src, name, p.Start)
		if len(diags) > 0 {
			return whole()
		}
		b := f.Body.(*hclsyntax.Body)
		for n, a := range b.Attributes {
			if _, dup := body.Attributes[n]; dup {
				return whole() // one parse reports the duplicate
			}
			body.Attributes[n] = a
		}
		body.Blocks = append(body.Blocks, b.Blocks...)
		if i == 0 {
			body.SrcRange = b.SrcRange
		}
		body.SrcRange.End = b.SrcRange.End
		body.EndRange = b.EndRange
	}
	return &hcl.File{Body: body, Bytes: src}, nil
}
