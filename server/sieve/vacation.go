package sieve

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"strings"
	"time"
)

// AutoReplyAllowed reports whether RFC 3834 and RFC 5230 4.5-4.7 allow an
// automatic reply to msg, received from envFrom for the user with the
// addresses own; if not, the reason says why.
func AutoReplyAllowed(msg *Message, envFrom string, own []string, v Vacation) (bool, string) {
	if envFrom == "" {
		return false, "null sender"
	}
	local := strings.ToLower(envFrom)
	if i := strings.LastIndexByte(local, '@'); i >= 0 {
		local = local[:i]
	}
	switch {
	case strings.HasPrefix(local, "owner-"), strings.HasSuffix(local, "-request"),
		local == "mailer-daemon", local == "listserv", local == "majordomo":
		return false, "sender " + envFrom + " is a list or system address"
	}
	for _, a := range msg.rawValues("auto-submitted") {
		if !strings.EqualFold(strings.TrimSpace(strings.SplitN(a, ";", 2)[0]), "no") {
			return false, "message is Auto-Submitted: " + a
		}
	}
	for _, f := range msg.fields {
		if strings.HasPrefix(f.name, "list-") {
			return false, "message is from a mailing list (" + f.name + ")"
		}
	}
	for _, p := range msg.rawValues("precedence") {
		switch strings.ToLower(strings.TrimSpace(p)) {
		case "bulk", "list", "junk":
			return false, "message has Precedence: " + p
		}
	}
	mine := append(append([]string(nil), own...), v.Addresses...)
	for _, a := range mine {
		if strings.EqualFold(a, envFrom) {
			return false, "sender is the user"
		}
	}
	for _, h := range []string{"to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"} {
		for _, raw := range msg.rawValues(h) {
			for _, a := range addressesIn(raw) {
				if containsFold(mine, a) {
					return true, ""
				}
			}
		}
	}
	return false, "the user's address is not in To or Cc"
}

// Key identifies the reply for the once-per-period rule (RFC 5230 4.2):
// the sender and the :handle, or a digest of the reply when there is none.
func (v Vacation) Key(sender string) string {
	h := v.Handle
	if h == "" {
		sum := sha256.Sum256([]byte(v.Subject + "\x00" + v.From + "\x00" + v.Reason + fmt.Sprint(v.MIME)))
		h = hex.EncodeToString(sum[:8])
	}
	return strings.ToLower(sender) + "\x00" + h
}

// Compose builds the reply to msg (RFC 5230 5, RFC 3834 3): from the
// user's address (or :from), to the envelope sender, with
// Auto-Submitted: auto-replied and the threading fields.
func (v Vacation) Compose(msg *Message, user, envFrom, msgID string, now time.Time) []byte {
	from := user
	if v.From != "" {
		from = v.From
	}
	subject := v.Subject
	if subject == "" {
		orig := ""
		if s := msg.values("subject"); len(s) > 0 {
			orig = s[0]
		}
		subject = "Auto: " + orig
	}
	var b bytes.Buffer
	hdr := func(k, val string) {
		val = strings.NewReplacer("\r", " ", "\n", " ").Replace(val)
		fmt.Fprintf(&b, "%s: %s\r\n", k, val)
	}
	hdr("From", from)
	hdr("To", envFrom)
	hdr("Subject", mime.QEncoding.Encode("utf-8", subject))
	hdr("Date", now.Format(time.RFC1123Z))
	hdr("Message-ID", msgID)
	if ids := msg.rawValues("message-id"); len(ids) > 0 {
		hdr("In-Reply-To", ids[0])
		refs := ids[0]
		if r := msg.rawValues("references"); len(r) > 0 {
			refs = r[0] + " " + ids[0]
		} else if r := msg.rawValues("in-reply-to"); len(r) > 0 {
			refs = r[0] + " " + ids[0]
		}
		hdr("References", refs)
	}
	hdr("Auto-Submitted", "auto-replied (vacation)")
	hdr("MIME-Version", "1.0")
	if v.MIME {
		// The reason is a MIME entity: its own header, a blank line, a body.
		body := strings.ReplaceAll(strings.ReplaceAll(v.Reason, "\r\n", "\n"), "\n", "\r\n")
		b.WriteString(body)
		if !strings.HasSuffix(body, "\r\n") {
			b.WriteString("\r\n")
		}
		return b.Bytes()
	}
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	qp.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(v.Reason, "\r\n", "\n"), "\n", "\r\n")))
	qp.Close()
	b.WriteString("\r\n")
	return b.Bytes()
}
