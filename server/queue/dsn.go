package queue

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
)

// DSN actions (RFC 3464 section 2.3.3).
const (
	ActionFailed  = "failed"
	ActionDelayed = "delayed"
)

// DSN is a delivery status notification: a multipart/report (RFC 6522)
// with a human-readable part, a message/delivery-status part (RFC 3464) and
// the original message's header (text/rfc822-headers).
type DSN struct {
	// ReportingMTA is this server's host name.
	ReportingMTA string
	// From is the notification's From address (MAILER-DAEMON@host); To the
	// original sender.
	From, To string
	// Date of the notification; ArrivalDate of the original message.
	Date, ArrivalDate time.Time
	// OriginalEnvelopeID is the ENVID, if any; MessageID the
	// notification's own Message-ID.
	MessageID  string
	Recipients []DSNRecipient
	// OriginalHeader is the header section of the original message.
	OriginalHeader []byte
	// UTF8 makes an RFC 6533 notification, for a message that needed
	// SMTPUTF8: UTF-8 kept in addresses and diagnostics,
	// message/global-delivery-status and message/global-headers.
	UTF8 bool
}

// DSNRecipient is one per-recipient block.
type DSNRecipient struct {
	Addr string // Final-Recipient (rfc822)
	// Action is failed or delayed; Status an RFC 3463 code.
	Action, Status string
	// RemoteMTA (dns) and Diagnostic (smtp) are the last reply, if any.
	RemoteMTA, Diagnostic string
	// WillRetryUntil is set for delayed recipients.
	WillRetryUntil time.Time
}

// headerValue makes s safe as a one-line header value: printable ASCII,
// at most 900 bytes.
func headerValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 900; i++ {
		c := s[i]
		switch {
		case c == '\r' || c == '\n' || c == '\t':
			b.WriteByte(' ')
		case c < 32 || c > 126:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(b.String())
}

func boundary() string {
	var b [12]byte
	rand.Read(b[:])
	return "=_dsn_" + hex.EncodeToString(b[:])
}

// Bytes formats the notification as a message (CRLF line ends).
func (d *DSN) Bytes() []byte {
	var b bytes.Buffer
	bnd := boundary()
	failed := false
	for _, r := range d.Recipients {
		if r.Action == ActionFailed {
			failed = true
		}
	}
	subject := "Delayed Mail (still being retried)"
	if failed {
		subject = "Undelivered Mail Returned to Sender"
	}
	date := d.Date
	if date.IsZero() {
		date = time.Now()
	}
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	headerValue := headerValue
	charset, statusType, headersType := "us-ascii", "message/delivery-status", "text/rfc822-headers"
	if d.UTF8 {
		headerValue = headerValueUTF8
		charset, statusType, headersType = "utf-8", "message/global-delivery-status", "message/global-headers"
	}
	w("From: Mail Delivery System <%s>", headerValue(d.From))
	w("To: <%s>", headerValue(d.To))
	w("Subject: %s", subject)
	w("Date: %s", date.Format(time.RFC1123Z))
	if d.MessageID != "" {
		w("Message-ID: <%s>", headerValue(d.MessageID))
	}
	w("Auto-Submitted: auto-replied")
	w("MIME-Version: 1.0")
	// RFC 6522: report-type is the subtype of the second part.
	w("Content-Type: multipart/report; report-type=%s; boundary=\"%s\"", strings.TrimPrefix(statusType, "message/"), bnd)
	w("")
	w("This is a MIME-encapsulated delivery status notification.")
	w("")
	w("--%s", bnd)
	w("Content-Type: text/plain; charset=%s", charset)
	w("")
	w("This is the mail system at host %s.", headerValue(d.ReportingMTA))
	w("")
	if failed {
		w("Your message could not be delivered to one or more recipients.")
	} else {
		w("Your message has not been delivered yet to one or more recipients.")
		w("The mail system will keep trying; you need not send it again.")
	}
	w("")
	for _, r := range d.Recipients {
		line := fmt.Sprintf("<%s>: %s", headerValue(r.Addr), r.Action)
		if r.Diagnostic != "" {
			line += ": " + headerValue(r.Diagnostic)
		}
		w("%s", line)
	}
	w("")
	w("--%s", bnd)
	w("Content-Type: %s", statusType)
	w("")
	w("Reporting-MTA: dns; %s", headerValue(d.ReportingMTA))
	if !d.ArrivalDate.IsZero() {
		w("Arrival-Date: %s", d.ArrivalDate.Format(time.RFC1123Z))
	}
	for _, r := range d.Recipients {
		w("")
		w("Final-Recipient: %s; %s", addrType(r.Addr), headerValue(r.Addr))
		w("Action: %s", headerValue(r.Action))
		w("Status: %s", headerValue(r.Status))
		if r.RemoteMTA != "" {
			w("Remote-MTA: dns; %s", headerValue(r.RemoteMTA))
		}
		if r.Diagnostic != "" {
			w("Diagnostic-Code: smtp; %s", headerValue(r.Diagnostic))
		}
		if !r.WillRetryUntil.IsZero() {
			w("Will-Retry-Until: %s", r.WillRetryUntil.Format(time.RFC1123Z))
		}
	}
	w("")
	w("--%s", bnd)
	w("Content-Type: %s", headersType)
	w("")
	hdr := bytes.ReplaceAll(d.OriginalHeader, []byte("\r\n"), []byte("\n"))
	hdr = bytes.TrimRight(hdr, "\n")
	for _, l := range bytes.Split(hdr, []byte("\n")) {
		if bytes.HasPrefix(l, []byte("--"+bnd)) {
			continue
		}
		b.Write(l)
		b.WriteString("\r\n")
	}
	w("")
	w("--%s--", bnd)
	return b.Bytes()
}

// ErrNotDSN is returned by ParseDSN for a message that is not a
// multipart/report of type delivery-status.
var ErrNotDSN = errors.New("queue: not a delivery status notification")

// ParseDSN reads a notification: its From, To, Date and Message-ID header
// fields, the delivery-status fields and the original header. The human
// readable part is skipped.
func ParseDSN(r io.Reader) (*DSN, error) {
	m, err := mail.ReadMessage(r)
	if err != nil {
		return nil, fmt.Errorf("parse DSN: %w", err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || !(strings.EqualFold(params["report-type"], "delivery-status") || strings.EqualFold(params["report-type"], "global-delivery-status")) || params["boundary"] == "" {
		return nil, ErrNotDSN
	}
	d := &DSN{}
	if a, err := mail.ParseAddress(m.Header.Get("From")); err == nil {
		d.From = a.Address
	}
	if a, err := mail.ParseAddress(m.Header.Get("To")); err == nil {
		d.To = a.Address
	}
	d.Date, _ = mail.ParseDate(m.Header.Get("Date"))
	d.MessageID = strings.Trim(strings.TrimSpace(m.Header.Get("Message-ID")), "<>")
	mr := multipart.NewReader(m.Body, params["boundary"])
	found := false
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parse DSN: %w", err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		switch ct {
		case "message/delivery-status", "message/global-delivery-status":
			if err := d.parseStatus(io.LimitReader(p, 1<<20)); err != nil {
				return nil, err
			}
			found = true
		case "text/rfc822-headers", "message/rfc822", "message/global-headers":
			b, err := io.ReadAll(io.LimitReader(p, 1<<20))
			if err != nil {
				return nil, fmt.Errorf("parse DSN: %w", err)
			}
			if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
				b = b[:i+2]
			}
			d.OriginalHeader = b
		}
	}
	if !found {
		return nil, ErrNotDSN
	}
	return d, nil
}

func (d *DSN) parseStatus(r io.Reader) error {
	tp := textproto.NewReader(bufio.NewReader(r))
	first := true
	for {
		h, err := tp.ReadMIMEHeader()
		if len(h) > 0 {
			if first {
				d.ReportingMTA = typedValue(h.Get("Reporting-Mta"))
				d.ArrivalDate, _ = mail.ParseDate(h.Get("Arrival-Date"))
			} else {
				rc := DSNRecipient{
					Addr:       typedValue(h.Get("Final-Recipient")),
					Action:     strings.ToLower(strings.TrimSpace(h.Get("Action"))),
					Status:     strings.TrimSpace(h.Get("Status")),
					RemoteMTA:  typedValue(h.Get("Remote-Mta")),
					Diagnostic: typedValue(h.Get("Diagnostic-Code")),
				}
				rc.WillRetryUntil, _ = mail.ParseDate(h.Get("Will-Retry-Until"))
				d.Recipients = append(d.Recipients, rc)
			}
			first = false
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("parse DSN delivery-status: %w", err)
		}
	}
}

// typedValue strips the "type;" of a typed field (RFC 3464 section 2.1.2).
func typedValue(v string) string {
	if _, after, ok := strings.Cut(v, ";"); ok {
		v = after
	}
	return strings.TrimSpace(v)
}
