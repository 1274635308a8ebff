package imap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

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

// Literal limits. The library buffers every literal but APPEND's message
// in memory and refuses those over 4096 bytes, but it answers nothing
// before the client sends the literal (a synchronising one is then never
// sent: the connection hung, issue 17), and it parses the bytes of a
// refused non-synchronising literal as commands. So conn checks each
// literal a client announces before the library sees it:
//
//   - before login, and for every argument but APPEND's message, at most
//     maxBufferedLiteral bytes (the library's own limit; Dovecot allows
//     8 KiB before login);
//   - APPEND's message, at most the APPENDLIMIT (Options.AppendLimit).
//
// A synchronising literal over the limit on the first line of a command
// is answered "BAD [TOOBIG]" (NO for APPEND's message, RFC 7889) and the
// line dropped: the client sends no literal. On a later line of a command
// (the library is in the middle of it) the literal's "{N}" is cut to "{",
// which the library refuses with a tagged BAD. A non-synchronising literal
// over the limit ends the connection with BYE (RFC 7888 section 4): its
// bytes are on their way and would be read as commands.
const maxBufferedLiteral = 4096

// errLiteralRefused ends a connection whose client sent a
// non-synchronising literal over the limit.
var errLiteralRefused = errors.New("imap: non-synchronising literal over the limit")

// literalLimit returns the largest literal the current line may end
// with. first says whether the line starts the command, loggedIn whether
// the session is authenticated.
func (c *conn) literalLimit(line []byte, first, loggedIn bool) (limit int64, appendMessage bool) {
	if !loggedIn || !strings.EqualFold(c.cmdName, "APPEND") {
		return maxBufferedLiteral, false
	}
	if first {
		// "tag APPEND {N}": the mailbox name, not the message.
		_, rest, _ := bytes.Cut(line, []byte(" "))
		_, args, _ := bytes.Cut(rest, []byte(" "))
		if len(args) > 0 && args[0] == '{' {
			return maxBufferedLiteral, false
		}
	}
	if c.appendLimit <= 0 {
		return 1<<63 - 1, true // the library's limit applies
	}
	return c.appendLimit, true
}

// checkLiteral looks at a whole line that ends in a literal of size n,
// before the library sees it. It returns the line to pass on (nil: drop
// it, already answered) or an error that ends the connection.
func (c *conn) checkLiteral(line []byte, n int64, first bool) ([]byte, error) {
	limit, appendMessage := c.literalLimit(line, first, c.quota.Load() != nil)
	if n <= limit {
		return line, nil
	}
	trimmed := bytes.TrimRight(line, "\r\n")
	nonSync := bytes.HasSuffix(trimmed, []byte("+}"))
	c.logger.Info("imap literal over the limit refused", "remote", c.RemoteAddr().String(),
		"command", c.cmdName, "size", n, "limit", limit, "non_synchronizing", nonSync)
	var answer string
	if first {
		kind := "BAD"
		if appendMessage {
			kind = "NO"
		}
		answer = fmt.Sprintf("%s %s [TOOBIG] Literal of %d bytes over the limit of %d bytes\r\n", c.cmdTag, kind, n, limit)
	}
	if nonSync {
		if err := c.writeRaw(answer + "* BYE [TOOBIG] Non-synchronizing literal over the limit\r\n"); err != nil {
			return nil, err
		}
		return nil, errLiteralRefused
	}
	if first {
		return nil, c.writeRaw(answer)
	}
	// In the middle of a command: an incomplete literal, refused with a
	// tagged BAD by the library.
	i := bytes.LastIndexByte(trimmed, '{')
	return append(trimmed[:i+1:i+1], "\r\n"...), nil
}

// startLine notes, at the start of each line, whether it starts a
// command, and if so the command's tag and name.
func (c *conn) startLine(line []byte) {
	c.lineFirst = !c.cont
	if !c.lineFirst {
		return
	}
	fields := bytes.SplitN(bytes.TrimRight(line, "\r\n"), []byte(" "), 3)
	c.cmdTag, c.cmdName = string(fields[0]), ""
	if len(fields) > 1 {
		c.cmdName = strings.ToUpper(string(fields[1]))
	}
}
