// Package limits holds the bounds on a message that every part of the
// server applies alike: what SMTP accepts at DATA, IMAP accepts at APPEND
// and the store's header extraction may assume. Keeping them in one leaf
// package makes sure a message one part accepts is one the others can
// handle.
//
// The header is bounded because every header operation (FETCH
// BODY[HEADER.FIELDS], SEARCH, the SMTP From check, DKIM) reads all of it:
// Postfix's header_size_limit is 100 KiB; 1 MiB leaves room for long
// Received chains and ARC/DKIM sets while keeping those operations cheap.
package limits

import (
	"errors"
	"fmt"
	"io"
)

const (
	// MaxHeaderBytes bounds the header section of a message (every byte
	// before the empty line that ends it, that line included).
	MaxHeaderBytes = 1 << 20
	// MaxHeaderLines bounds the number of lines of the header section
	// (folded continuation lines count one each).
	MaxHeaderLines = 10000
	// MaxLineBytes bounds one line of a received message, CRLF included.
	// RFC 5321 section 4.5.3.1.6's 1000 is a minimum that real mail
	// exceeds (HTML mailers, long base64 lines); Postfix accepts any
	// length. 64 KiB accepts what is sent in practice.
	MaxLineBytes = 64 << 10
	// MaxOutgoingLineBytes is the longest line (without CRLF) a message
	// that leaves the server may have (RFC 5322 section 2.1.1: MUST be no
	// more than 998 characters).
	MaxOutgoingLineBytes = 998
)

// ErrHeaderTooLarge is returned by a HeaderReader when the header section
// exceeds MaxHeaderBytes or MaxHeaderLines.
var ErrHeaderTooLarge = errors.New("message header too large")

// HeaderReader passes a message through and fails with an error wrapping
// ErrHeaderTooLarge as soon as its header section is known to exceed
// MaxHeaderBytes or MaxHeaderLines. It looks at each byte of the header
// once, and at nothing after it. A message without an empty line is all
// header.
type HeaderReader struct {
	r io.Reader

	n, lines int
	done     bool
	// col is the number of bytes of the current line so far; cr that
	// the line so far is a lone CR.
	col int
	cr  bool
	err error
}

// NewHeaderReader returns a HeaderReader reading from r.
func NewHeaderReader(r io.Reader) *HeaderReader {
	return &HeaderReader{r: r}
}

// HeaderDone reports whether the end of the header section was seen.
func (h *HeaderReader) HeaderDone() bool { return h.done }

func (h *HeaderReader) Read(p []byte) (int, error) {
	if h.err != nil {
		return 0, h.err
	}
	n, err := h.r.Read(p)
	if h.done {
		return n, err
	}
	for _, c := range p[:n] {
		h.n++
		if h.n > MaxHeaderBytes {
			return 0, h.fail()
		}
		if c == '\n' {
			if h.col == 0 || h.col == 1 && h.cr {
				h.done = true
				return n, err
			}
			h.lines++
			h.col, h.cr = 0, false
		} else {
			h.cr = h.col == 0 && c == '\r'
			h.col++
		}
		if h.lines > MaxHeaderLines {
			return 0, h.fail()
		}
	}
	return n, err
}

func (h *HeaderReader) fail() error {
	h.err = fmt.Errorf("header over %d bytes or %d lines: %w", MaxHeaderBytes, MaxHeaderLines, ErrHeaderTooLarge)
	return h.err
}
