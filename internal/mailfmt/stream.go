// Package mailfmt reads and writes a user's mail in the formats that other
// mail software reads: Maildir (the Maildir++ layout of Dovecot and
// Courier, flags in file names, keywords in dovecot-keywords, UIDs in
// dovecot-uidlist) and mbox (the mboxrd variant, with Status, X-Status and
// X-Keywords headers as Dovecot and mutt write them), and the transfer
// stream through which `mailctl export` and `mailctl import` move messages
// between a workstation and a server's control socket.
//
// The formats are written here rather than with a library: the maintained
// Go libraries found (emersion/go-maildir, emersion/go-mbox) write neither
// Dovecot's keyword and UID files nor the mboxrd escaping with status
// headers, and they read a message at a time without the positions and
// file names that a resumable import keys its state on.
package mailfmt

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Record kinds of the transfer stream.
const (
	KindMailbox = "mailbox"
	KindMessage = "message"
	KindEnd     = "end"
	KindError   = "error"
)

// MaxRecordHeader bounds the JSON line of a record.
const MaxRecordHeader = 1 << 20

// Record is one record of the transfer stream: a JSON line, followed for
// a message by exactly Size bytes of the message and a newline. A
// mailbox record precedes the messages of that mailbox; the stream ends
// with an end record (a stream cut short has none) or an error record.
type Record struct {
	Kind string `json:"kind"`

	// Mailbox is the mailbox's name ("/" separates levels) in mailbox
	// and message records.
	Mailbox     string `json:"mailbox,omitempty"`
	SpecialUse  string `json:"special_use,omitempty"`
	Subscribed  bool   `json:"subscribed,omitempty"`
	UIDValidity uint32 `json:"uidvalidity,omitempty"`
	UIDNext     uint32 `json:"uidnext,omitempty"`

	// Message records.
	UID   uint32    `json:"uid,omitempty"`
	Flags []string  `json:"flags,omitempty"`
	Date  time.Time `json:"date,omitzero"`
	Size  int64     `json:"size,omitempty"`
	// Digest is the hex SHA-256 of the message, sent instead of its
	// bytes (Size is then 0) when only digests were asked for.
	Digest string `json:"sha256,omitempty"`
	// Key identifies the message in its source (an import's state).
	Key string `json:"key,omitempty"`

	// End records: the number of messages sent. Error records: why the
	// stream stops.
	Messages int    `json:"messages,omitempty"`
	Error    string `json:"error,omitempty"`
}

// StreamWriter writes a transfer stream.
type StreamWriter struct {
	w        *bufio.Writer
	messages int
}

// NewStreamWriter returns a writer of a transfer stream to w.
func NewStreamWriter(w io.Writer) *StreamWriter {
	return &StreamWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

func (s *StreamWriter) header(r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = s.w.Write(b)
	return err
}

// Mailbox starts the messages of a mailbox.
func (s *StreamWriter) Mailbox(r Record) error {
	r.Kind = KindMailbox
	return s.header(r)
}

// Message writes a message record and r.Size bytes of body (a body
// shorter than that is an error).
func (s *StreamWriter) Message(r Record, body io.Reader) error {
	r.Kind = KindMessage
	if err := s.header(r); err != nil {
		return err
	}
	if r.Size > 0 {
		n, err := io.CopyN(s.w, body, r.Size)
		if err != nil {
			return fmt.Errorf("copy message %d of %q (%d of %d bytes): %w", r.UID, r.Mailbox, n, r.Size, err)
		}
	}
	if err := s.w.WriteByte('\n'); err != nil {
		return err
	}
	s.messages++
	return nil
}

// Flush sends what is buffered.
func (s *StreamWriter) Flush() error { return s.w.Flush() }

// End writes the end record and flushes.
func (s *StreamWriter) End() error {
	if err := s.header(Record{Kind: KindEnd, Messages: s.messages}); err != nil {
		return err
	}
	return s.w.Flush()
}

// Fail writes an error record and flushes.
func (s *StreamWriter) Fail(err error) error {
	if werr := s.header(Record{Kind: KindError, Error: err.Error()}); werr != nil {
		return werr
	}
	return s.w.Flush()
}

// ErrTruncated is returned by StreamReader.Next when the stream ends
// without an end record.
var ErrTruncated = errors.New("the stream ended early (no end record)")

// StreamReader reads a transfer stream.
type StreamReader struct {
	r        *bufio.Reader
	body     *exactReader
	messages int
	done     bool
}

// NewStreamReader returns a reader of the transfer stream r.
func NewStreamReader(r io.Reader) *StreamReader {
	return &StreamReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// Next returns the next record; for a message, body reads its bytes
// (valid until the next call). At the end record it returns io.EOF (after
// checking the count); an error record is returned as an error.
func (s *StreamReader) Next() (Record, io.Reader, error) {
	if s.done {
		return Record{}, nil, io.EOF
	}
	if s.body != nil {
		if _, err := io.Copy(io.Discard, s.body); err != nil {
			return Record{}, nil, s.cut(err)
		}
		if s.body.n > 0 {
			return Record{}, nil, ErrTruncated
		}
		if c, err := s.r.ReadByte(); err != nil || c != '\n' {
			return Record{}, nil, s.cut(fmt.Errorf("message not followed by a newline"))
		}
		s.body = nil
	}
	line, err := s.readLine()
	if err != nil {
		return Record{}, nil, s.cut(err)
	}
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return Record{}, nil, fmt.Errorf("bad record %.80q: %w", line, err)
	}
	switch r.Kind {
	case KindEnd:
		s.done = true
		if r.Messages != s.messages {
			return Record{}, nil, fmt.Errorf("the stream says %d messages, %d were read", r.Messages, s.messages)
		}
		return Record{}, nil, io.EOF
	case KindError:
		s.done = true
		return Record{}, nil, fmt.Errorf("the server stopped: %s", r.Error)
	case KindMailbox:
		return r, nil, nil
	case KindMessage:
		if r.Size < 0 {
			return Record{}, nil, fmt.Errorf("message %d of %q: negative size", r.UID, r.Mailbox)
		}
		s.messages++
		s.body = &exactReader{r: s.r, n: r.Size}
		return r, s.body, nil
	}
	return Record{}, nil, fmt.Errorf("unknown record kind %q", r.Kind)
}

func (s *StreamReader) readLine() ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := s.r.ReadLine()
		if err != nil {
			return nil, err
		}
		line = append(line, chunk...)
		if len(line) > MaxRecordHeader {
			return nil, fmt.Errorf("record longer than %d bytes", MaxRecordHeader)
		}
		if !isPrefix {
			return line, nil
		}
	}
}

func (s *StreamReader) cut(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrTruncated
	}
	return err
}

// exactReader reads the n bytes of a message: a stream that ends before
// them is an error (io.ErrUnexpectedEOF), never a shorter message.
type exactReader struct {
	r io.Reader
	n int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.n {
		p = p[:e.n]
	}
	n, err := e.r.Read(p)
	e.n -= int64(n)
	if err == io.EOF && e.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}
