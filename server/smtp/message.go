package smtp

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mailctl/mailctl/server/internal/bufpool"
	"github.com/mailctl/mailctl/server/internal/limits"
)

// memSpoolBytes is how much of a message is held in memory before the rest
// goes to a temporary file.
const memSpoolBytes = 1 << 20

// spool holds one received message body for the time of a transaction:
// in memory when small, else in an unlinked temporary file. Its readers are
// independent, so deliveries may read it concurrently; none may be used
// after Close.
type spool struct {
	mem  []byte
	buf  *[]byte // holds mem, back to spoolBufs at Close
	f    *os.File
	size int64
}

// spoolBufs recycles the memory of spools: one message per connection
// makes one spool per connection. Buffers beyond 256 KiB are not kept.
var spoolBufs = bufpool.New(16<<10, 256<<10)

func newSpool(dir string, r io.Reader) (*spool, error) {
	bp, err := spoolBufs.ReadUpTo(r, memSpoolBytes)
	if err != nil {
		return nil, err
	}
	buf := *bp
	if len(buf) <= memSpoolBytes {
		return &spool{mem: buf, buf: bp, size: int64(len(buf))}, nil
	}
	defer spoolBufs.Put(bp)
	n := int64(len(buf))
	f, err := os.CreateTemp(dir, "smtp-spool-*")
	if err != nil {
		return nil, fmt.Errorf("create spool file: %w", err)
	}
	// Unlink at once: the open file lives until Close, and a crash leaves nothing.
	os.Remove(f.Name())
	sp := &spool{f: f}
	if _, err := f.Write(buf); err != nil {
		sp.Close()
		return nil, fmt.Errorf("write spool file: %w", err)
	}
	m, err := io.Copy(f, r)
	if err != nil {
		sp.Close()
		return nil, err
	}
	sp.size = n + m
	return sp, nil
}

// reader returns a new reader over the whole message.
func (s *spool) reader() io.Reader {
	if s.f == nil {
		return bytes.NewReader(s.mem)
	}
	return io.NewSectionReader(s.f, 0, s.size)
}

// readerAt returns random access to the whole message.
func (s *spool) readerAt() io.ReaderAt {
	if s.f == nil {
		return bytes.NewReader(s.mem)
	}
	return s.f
}

// readerWithout returns a new reader over the message without the byte
// ranges in remove (ascending, not overlapping).
func (s *spool) readerWithout(remove [][2]int64) io.Reader {
	if len(remove) == 0 {
		return s.reader()
	}
	ra := s.readerAt()
	var parts []io.Reader
	var off int64
	for _, r := range remove {
		start, end := max(r[0], off), min(r[1], s.size)
		if start >= end {
			continue
		}
		parts = append(parts, io.NewSectionReader(ra, off, start-off))
		off = end
	}
	parts = append(parts, io.NewSectionReader(ra, off, s.size-off))
	return io.MultiReader(parts...)
}

// head returns up to n first bytes.
func (s *spool) head(n int) []byte {
	if s.f == nil {
		if len(s.mem) > n {
			return s.mem[:n]
		}
		return s.mem
	}
	b := make([]byte, n)
	m, _ := s.f.ReadAt(b, 0)
	return b[:m]
}

func (s *spool) Close() error {
	if s.buf != nil {
		spoolBufs.Put(s.buf)
		s.buf, s.mem = nil, nil
	}
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}

// maxReceived is the hop count above which a message is taken for a loop
// (RFC 5321 section 6.3 suggests at least 100).
const maxReceived = 100

// headerInfo is what the server needs to know of a message's header
// section (RFC 5322 section 2.2).
type headerInfo struct {
	Received     int  // number of Received fields
	HasDate      bool // a Date field is present
	HasMessageID bool // a Message-ID field is present
	// From is the unfolded value of the last From field; FromCount counts
	// From fields (names compared without case and trailing blanks).
	From      string
	FromCount int
	// Lines counts the lines of the header section.
	Lines int
	// Malformed describes the first line that is neither a well-formed
	// field ("name:" with a printable name and no blank before the colon)
	// nor a continuation of one, or that holds a bare CR or a NUL: lines
	// receivers may read differently. "" when there is none.
	Malformed string
	// End is the offset of the body (just after the empty line), or -1 when
	// no empty line ends the header within the data examined.
	End int
}

// scanHeader examines the header section at the start of b: every line up
// to the first empty one, as IMAP header extraction and DKIM verifiers
// delimit it. A line that is not a field is noted in Malformed and the scan
// goes on, so that a field after it still counts. Lines end at LF (a CR
// before it is dropped).
func scanHeader(b []byte) headerInfo {
	h := headerInfo{End: -1}
	i := 0
	inFrom := false
	bad := func(why string) {
		if h.Malformed == "" {
			h.Malformed = fmt.Sprintf("header line %d: %s", h.Lines, why)
		}
	}
	for i < len(b) {
		j := bytes.IndexByte(b[i:], '\n')
		var line []byte
		next := len(b)
		if j >= 0 {
			line, next = b[i:i+j], i+j+1
		} else {
			line = b[i:]
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			if j >= 0 {
				h.End = next
			}
			return h
		}
		i = next
		h.Lines++
		if bytes.IndexByte(line, '\r') >= 0 {
			bad("bare CR")
		}
		if bytes.IndexByte(line, 0) >= 0 {
			bad("NUL")
		}
		if line[0] == ' ' || line[0] == '\t' {
			if h.Lines == 1 {
				bad("continuation line with no field to continue")
			} else if inFrom {
				h.From += string(line)
			}
			continue
		}
		inFrom = false
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			bad("no colon")
			continue
		}
		name := bytes.TrimRight(line[:colon], " \t")
		if len(name) != colon {
			bad("blank before the colon")
		}
		if len(name) == 0 || !fieldName(name) {
			bad("invalid field name")
			continue
		}
		switch strings.ToLower(string(name)) {
		case "received":
			h.Received++
		case "date":
			h.HasDate = true
		case "message-id":
			h.HasMessageID = true
		case "from":
			h.FromCount++
			h.From = string(line[colon+1:])
			inFrom = true
		}
	}
	return h
}

// lineStats passes a message through and notes what matters for relaying
// it: bare CRs and LFs (RFC 5322 section 2.3 allows CR and LF only
// together; a next hop may end a line, or the DATA, at a lone one) and the
// longest line.
type lineStats struct {
	r io.Reader

	bareCR, bareLF bool
	maxLine        int // longest line, without its CRLF
	col            int // bytes in the current line so far, CR included
	prevCR         bool
}

func (l *lineStats) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for _, c := range p[:n] {
		if l.prevCR && c != '\n' {
			l.bareCR = true
		}
		if c == '\n' {
			if !l.prevCR {
				l.bareLF = true
			}
			ln := l.col
			if l.prevCR {
				ln--
			}
			l.maxLine = max(l.maxLine, ln)
			l.col = 0
		} else {
			l.col++
		}
		l.prevCR = c == '\r'
	}
	if err == io.EOF {
		l.maxLine = max(l.maxLine, l.col)
		if l.prevCR {
			l.bareCR = true
		}
	}
	return n, err
}

// fieldName reports whether b is an RFC 5322 field name (printable ASCII
// except colon and space).
func fieldName(b []byte) bool {
	for _, c := range b {
		if c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// newID returns a random identifier for Received headers, logs and Message-IDs.
func newID() string {
	var b [9]byte
	rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// traceInfo is what the Received field says about a transaction.
type traceInfo struct {
	Helo     string
	RemoteIP string
	Hostname string
	TLS      string // "" without TLS, else e.g. "TLS1.3 TLS_AES_128_GCM_SHA256"
	Auth     bool
	ID       string
	For      string // single recipient, or ""
	Date     time.Time
	UTF8     bool // the client gave SMTPUTF8 (RFC 6531 section 3.7.3)
}

// receivedField formats an RFC 5321 section 4.4 trace field, folded, CRLF
// terminated. with is ESMTP, ESMTPS, ESMTPA or ESMTPSA (RFC 3848), or
// UTF8SMTP, UTF8SMTPS, UTF8SMTPA or UTF8SMTPSA (RFC 6531 section 4.3).
func receivedField(t traceInfo) string {
	with := "ESMTP"
	if t.UTF8 {
		with = "UTF8SMTP"
	}
	if t.TLS != "" {
		with += "S"
	}
	if t.Auth {
		with += "A"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s with %s id %s", cleanHelo(t.Helo), t.RemoteIP, t.Hostname, with, t.ID)
	if t.TLS != "" {
		fmt.Fprintf(&b, "\r\n\t(%s)", t.TLS)
	}
	if t.For != "" {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", t.For)
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", t.Date.Format(time.RFC1123Z))
	return b.String()
}

// cleanHelo keeps the client's EHLO argument safe to put in a header: the
// characters of a domain or address literal, at most 255 of them.
func cleanHelo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 255; i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-[]:_", c) >= 0 {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}

// foldReader breaks lines longer than limits.MaxOutgoingLineBytes (RFC 5322
// section 2.1.1) by inserting CRLF and a space, as Postfix does on relay:
// in the header that is a folded field; in the body the space keeps a
// broken piece from starting a line that means something (".", a MIME
// boundary "--", "From "), and base64 decoders skip it. The message must
// have no bare CR or LF (they are refused first).
type foldReader struct {
	r       *bufio.Reader
	col     int // bytes on the current output line
	pending []byte
}

func (f *foldReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(f.pending) > 0 {
			c := copy(p[n:], f.pending)
			f.pending = f.pending[c:]
			n += c
			continue
		}
		c, err := f.r.ReadByte()
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if c != '\r' && c != '\n' && f.col >= limits.MaxOutgoingLineBytes {
			f.pending = append(f.pending[:0], '\r', '\n', ' ', c)
			f.col = 2
			continue
		}
		p[n] = c
		n++
		f.col++
		if c == '\n' {
			f.col = 0
		}
	}
	return n, nil
}
