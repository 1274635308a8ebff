package imap

import (
	"fmt"
	"io"

	goimap "github.com/emersion/go-imap/v2"
)

// fullLiteral reads an APPEND literal and fails with io.ErrUnexpectedEOF
// when it ends before its announced size (RFC 9051 section 4.3: a literal
// is exactly that many octets): a client that hangs up in the middle of
// an APPEND must not leave a truncated message in the mailbox.
type fullLiteral struct {
	r    goimap.LiteralReader
	read int64
}

func (l *fullLiteral) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.read += int64(n)
	if err == io.EOF && l.read != l.r.Size() {
		return n, fmt.Errorf("APPEND literal ended after %d of %d octets: %w", l.read, l.r.Size(), io.ErrUnexpectedEOF)
	}
	return n, err
}

// Size is the size the client announced.
func (l *fullLiteral) Size() int64 { return l.r.Size() }
