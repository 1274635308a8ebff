package mailfmt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"time"
)

// The mbox files written here are mboxrd: each message starts with a
// From_ line ("From sender asctime-date"), a body line that starts with
// "From " after any number of '>' gets one more '>', and a blank line
// ends the message. The flags are in the header fields that Dovecot and
// mutt read and write: Status (R seen, O old), X-Status (A answered,
// F flagged, T draft, D deleted) and X-Keywords (keywords, space
// separated). Line ends are LF.

// asctime is the date layout of a From_ line.
const asctime = "Mon Jan _2 15:04:05 2006"

// statusFields are the header fields that carry the flags in an mbox:
// written from the flags and removed from the message when read.
var statusFields = map[string]bool{"status": true, "x-status": true, "x-keywords": true}

// MboxWriter writes messages to an mbox file.
type MboxWriter struct {
	w *bufio.Writer
}

// NewMboxWriter returns a writer of an mbox to w; Flush it at the end.
func NewMboxWriter(w io.Writer) *MboxWriter {
	return &MboxWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

// Flush writes what is buffered.
func (m *MboxWriter) Flush() error { return m.w.Flush() }

// Write appends msg (CRLF or LF line ends) to the mbox.
func (m *MboxWriter) Write(msg Message) error {
	body := ToLF(msg.Body)
	he := headerEnd(body)
	hdr, rest := body[:he], body[he:]
	blank := bytes.HasSuffix(hdr, []byte("\n\n")) || bytes.Equal(hdr, []byte("\n"))
	if blank {
		hdr = hdr[:len(hdr)-1]
	}
	sender := "MAILER-DAEMON"
	var fields [][]byte
	for _, f := range splitFields(hdr) {
		name, value := fieldName(f)
		if statusFields[name] {
			continue
		}
		if name == "return-path" {
			if a := strings.Trim(value, "<> "); a != "" && !strings.ContainsAny(a, " \t") {
				sender = a
			}
		}
		fields = append(fields, f)
	}
	date := msg.Date
	if date.IsZero() {
		date = time.Unix(0, 0)
	}
	fmt.Fprintf(m.w, "From %s %s\n", sender, date.UTC().Format(asctime))
	for _, f := range fields {
		if !bytes.HasSuffix(f, []byte("\n")) {
			f = append(f[:len(f):len(f)], '\n')
		}
		writeEscaped(m.w, f)
	}
	status := "O"
	if HasFlag(msg.Flags, FlagSeen) {
		status = "RO"
	}
	fmt.Fprintf(m.w, "Status: %s\n", status)
	var xs strings.Builder
	for _, p := range []struct {
		flag string
		c    byte
	}{{FlagAnswered, 'A'}, {FlagFlagged, 'F'}, {FlagDraft, 'T'}, {FlagDeleted, 'D'}} {
		if HasFlag(msg.Flags, p.flag) {
			xs.WriteByte(p.c)
		}
	}
	if xs.Len() > 0 {
		fmt.Fprintf(m.w, "X-Status: %s\n", xs.String())
	}
	kw := keywords(msg.Flags)
	if HasFlag(msg.Flags, FlagForwarded) {
		kw = append(kw, FlagForwarded)
	}
	if len(kw) > 0 {
		fmt.Fprintf(m.w, "X-Keywords: %s\n", strings.Join(kw, " "))
	}
	m.w.WriteByte('\n')
	writeEscaped(m.w, rest)
	if len(rest) > 0 && rest[len(rest)-1] != '\n' {
		m.w.WriteByte('\n')
	}
	_, err := m.w.WriteString("\n")
	return err
}

// writeEscaped writes b line by line, quoting "From " lines the mboxrd way.
func writeEscaped(w *bufio.Writer, b []byte) {
	for len(b) > 0 {
		end := bytes.IndexByte(b, '\n') + 1
		if end == 0 {
			end = len(b)
		}
		line := b[:end]
		if isFromLine(bytes.TrimLeft(line, ">")) {
			w.WriteByte('>')
		}
		w.Write(line)
		b = b[end:]
	}
}

func isFromLine(line []byte) bool { return bytes.HasPrefix(line, []byte("From ")) }

// ErrNotMbox is returned by MboxReader.Next when the file does not start
// with a From_ line.
var ErrNotMbox = errors.New("not an mbox file (it does not start with a \"From \" line)")

// MaxMboxMessage bounds the size of a message read from an mbox.
const MaxMboxMessage = 512 << 20

// MboxReader reads the messages of an mbox (mboxrd, and mboxo and
// Google Takeout's, whose "From " body lines are quoted the same way).
// A message starts at a line beginning with "From " that follows a blank
// line (or starts the file).
type MboxReader struct {
	r       *bufio.Reader
	n       int
	pending []byte // the From_ line of the next message
	err     error
	offset  int64
}

// NewMboxReader returns a reader of the mbox r.
func NewMboxReader(r io.Reader) *MboxReader {
	return &MboxReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// Offset is the number of bytes of the file read so far.
func (m *MboxReader) Offset() int64 { return m.offset }

func (m *MboxReader) readLine() ([]byte, error) {
	line, err := m.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		long := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = m.r.ReadSlice('\n')
			long = append(long, line...)
			if len(long) > MaxMboxMessage {
				return nil, fmt.Errorf("message %d: a line longer than %d bytes", m.n+1, MaxMboxMessage)
			}
		}
		line = long
	}
	m.offset += int64(len(line))
	if err == io.EOF && len(line) > 0 {
		err = nil
	}
	return line, err
}

// Next returns the next message, or io.EOF after the last.
func (m *MboxReader) Next() (Message, error) {
	if m.err != nil {
		return Message{}, m.err
	}
	from := m.pending
	if from == nil {
		// The first message: skip blank lines, then a From_ line.
		for {
			line, err := m.readLine()
			if err == io.EOF {
				m.err = io.EOF
				if m.n == 0 && m.offset > 0 {
					m.err = ErrNotMbox
				}
				return Message{}, m.err
			}
			if err != nil {
				m.err = err
				return Message{}, err
			}
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			if !isFromLine(line) {
				m.err = ErrNotMbox
				return Message{}, m.err
			}
			from = append([]byte(nil), line...)
			break
		}
	}
	m.pending = nil
	var body []byte
	prevBlank := false
	for {
		line, err := m.readLine()
		if err == io.EOF {
			m.err = io.EOF
			break
		}
		if err != nil {
			m.err = err
			return Message{}, err
		}
		if prevBlank && isFromLine(line) {
			m.pending = append([]byte(nil), line...)
			break
		}
		prevBlank = len(bytes.TrimRight(line, "\r\n")) == 0
		if q := bytes.TrimLeft(line, ">"); len(q) < len(line) && isFromLine(q) {
			line = line[1:]
		}
		body = append(body, line...)
		if len(body) > MaxMboxMessage {
			m.err = fmt.Errorf("message %d is larger than %d bytes", m.n+1, MaxMboxMessage)
			return Message{}, m.err
		}
	}
	m.n++
	body = ToLF(body)
	// The blank line that ends a message is the separator's.
	if bytes.HasSuffix(body, []byte("\n\n")) {
		body = body[:len(body)-1]
	}
	msg := parseMboxMessage(from, body)
	msg.Key = strconv.Itoa(m.n)
	return msg, nil
}

// parseMboxMessage reads the flags of an mbox message from its status
// fields (and removes them), its date from the From_ line (else its Date
// field), and Google's labels.
func parseMboxMessage(from, body []byte) Message {
	var msg Message
	he := headerEnd(body)
	hdr, rest := body[:he], body[he:]
	var keep [][]byte
	var dateField string
	for _, f := range splitFields(hdr) {
		name, value := fieldName(f)
		switch name {
		case "status":
			if strings.Contains(value, "R") {
				msg.Flags = append(msg.Flags, FlagSeen)
			}
			continue
		case "x-status":
			for _, p := range []struct {
				c    string
				flag string
			}{{"A", FlagAnswered}, {"F", FlagFlagged}, {"T", FlagDraft}, {"D", FlagDeleted}} {
				if strings.Contains(value, p.c) {
					msg.Flags = append(msg.Flags, p.flag)
				}
			}
			continue
		case "x-keywords":
			for _, k := range strings.FieldsFunc(value, func(r rune) bool { return r == ' ' || r == ',' }) {
				if !HasFlag(msg.Flags, k) {
					msg.Flags = append(msg.Flags, k)
				}
			}
			continue
		case "x-gmail-labels":
			msg.Labels = splitLabels(value)
		case "date":
			dateField = value
		}
		keep = append(keep, f)
	}
	out := make([]byte, 0, len(body))
	for _, f := range keep {
		out = append(out, f...)
	}
	out = append(out, rest...)
	msg.Body = ToCRLF(out)
	msg.Date = fromLineDate(from)
	if msg.Date.IsZero() && dateField != "" {
		if t, err := mail.ParseDate(dateField); err == nil {
			msg.Date = t
		}
	}
	return msg
}

// fromLineDate reads the date of a From_ line ("From sender date").
func fromLineDate(from []byte) time.Time {
	s := strings.TrimSpace(string(from))
	f := strings.Fields(s)
	if len(f) < 3 {
		return time.Time{}
	}
	rest := strings.Join(f[2:], " ")
	for _, layout := range []string{
		"Mon Jan _2 15:04:05 2006",
		"Mon Jan 2 15:04:05 2006",
		"Mon Jan 02 15:04:05 -0700 2006", // Google Takeout
		"Mon Jan 2 15:04:05 -0700 2006",
		"Mon Jan 2 15:04:05 MST 2006",
		"Mon Jan 2 15:04 2006",
	} {
		if t, err := time.Parse(layout, rest); err == nil {
			return t
		}
	}
	return time.Time{}
}

// splitLabels splits an X-Gmail-Labels value: labels separated by commas,
// a label with a comma in double quotes.
func splitLabels(v string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"':
			quoted = !quoted
		case c == '\\' && quoted && i+1 < len(v):
			i++
			cur.WriteByte(v[i])
		case c == ',' && !quoted:
			if l := strings.TrimSpace(cur.String()); l != "" {
				out = append(out, l)
			}
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if l := strings.TrimSpace(cur.String()); l != "" {
		out = append(out, l)
	}
	return out
}
