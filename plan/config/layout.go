package config

import "encoding/binary"

// LayoutFree returns src in a form that leaves out what does not change
// the meaning of HCL native syntax: comments, blank lines, the spaces at
// the start and end of lines, and the length of runs of spaces (one space
// stands for each run, and for a /* */ comment). Quoted strings and
// heredocs, template interpolations included, are kept byte for byte,
// framed so that they never read as code.
// Two sources with the same form have the same tokens; ok is false for
// a source it cannot follow (an unterminated string or comment), whose
// form would not say so.
//
// It is what the configuration digest hashes (plan/refresh.ConfigDigest).
// Why not hclsyntax.LexConfig: lexing is the costliest step of loading a
// large configuration (each token's columns are counted in grapheme
// clusters), and the digest lexed every file a second time after the
// load: 0.9 s of a 5 s plan of 5000 domains. This scan is one pass over
// the bytes with the scanner SplitTopLevel uses.
func LayoutFree(src []byte) (form []byte, ok bool) {
	out := make([]byte, 0, len(src)/2)
	s := scanner{src: src, line: 1}
	lineStart := true // nothing written on this line yet
	space := false    // a run of spaces (or a /* */ comment) is pending
	for s.i < len(src) {
		c := src[s.i]
		switch {
		case c == '\n':
			s.i++
			space = false
			if !lineStart {
				out = append(out, '\n')
				lineStart = true
			}
			continue
		case c == ' ' || c == '\t' || c == '\r':
			s.i++
			space = !lineStart
			continue
		case c == '#' || c == '/' && s.peek(1) == '/':
			s.lineComment() // its line end is read next
			continue
		case c == '/' && s.peek(1) == '*':
			s.blockComment()
			if s.fail {
				return nil, false
			}
			space = !lineStart
			continue
		}
		if space {
			out = append(out, ' ')
			space = false
		}
		lineStart = false
		start := s.i
		kind := byte(0)
		switch {
		case c == 0:
			return nil, false // not HCL; and the framing's mark
		case c == '"':
			s.i++
			s.quoted()
			kind = 'q'
		case c == '<' && s.peek(1) == '<' && s.heredocStart():
			kind = 'h'
			// The scanner allows spaces after the closing marker, HCL
			// does not: they are kept, not taken for layout.
			for s.i < len(src) && (src[s.i] == ' ' || src[s.i] == '\t' || src[s.i] == '\r') {
				s.i++
			}
		default:
			s.i++
		}
		if s.fail {
			return nil, false
		}
		if kind != 0 {
			// Kept bytes are framed (NUL, kind, length), so that a
			// heredoc's lines never read as the same lines of code, laid
			// out anew, of a source where "<<EOT" starts no heredoc.
			out = append(out, 0, kind)
			out = binary.AppendUvarint(out, uint64(s.i-start))
		}
		out = append(out, src[start:s.i]...)
	}
	return out, true
}
