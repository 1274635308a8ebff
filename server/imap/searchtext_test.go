package imap

import (
	"bytes"
	"strings"
	"testing"

	goimap "github.com/emersion/go-imap/v2"
	_ "github.com/emersion/go-message/charset" // charsets, as in mailctl (server/sieve)
)

// FuzzSearchText: a needle is in the texts that searchText makes (kept
// by a store.TextSearcher backend) exactly when matchEntity finds the
// pattern in the message: BODY in body, TEXT in head or body; patterns
// that textNeedles does not send are left to the node.
func FuzzSearchText(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nHello needle4242 World\r\n"), "NEEDLE4242")
	f.Add([]byte("Subject: Hello\r\n\r\nWorld\r\n"), "hello")
	f.Add([]byte("Subject: =?UTF-8?B?w5xuw69jb2Rl?=\r\n\r\nbody\r\n"), "ÜNÏ")
	f.Add([]byte("Subject: =?ISO-8859-1?Q?caf=E9?=\r\n\r\nbody\r\n"), "café")
	f.Add([]byte("Subject: x\r\n\r\nHello W\r\norld\r\n"), "w\r\norld")
	f.Add([]byte("Content-Type: text/plain; charset=UTF-8\r\n\r\ncaf\xc3\xa9 \xe2\x84\xaaelvin\r\n"), "kelvin")
	f.Add([]byte("Content-Type: text/plain\r\n\r\n\xff\xfeabc\r\n"), "\ufffd")
	f.Add([]byte("Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n"), "CAFÉ")
	f.Add([]byte("Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n"), "o w")
	f.Add([]byte("Content-Type: image/png\r\n\r\nneedle\r\n"), "needle")
	f.Add([]byte("Content-Type: image/png\r\n\r\nneedle\r\n"), "image")
	f.Add([]byte("Content-Type: message/rfc822\r\n\r\nSubject: y\r\n\r\nneedle\r\n"), "subject: y")
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\npre\r\n--x\r\nContent-Type: text/plain\r\nX-A: hdr\r\n\r\nneedle\r\n--x\r\nContent-Type: text/html\r\n\r\n<b>two</b>\r\n--x--\r\n"), "hdr")
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain; charset=bogus\r\n\r\none\r\n--x\r\n\r\ntwo\r\n--x--\r\n"), "two")
	f.Add([]byte("Content-Type: bad;;\r\n\r\nneedle\r\n"), "needle")
	f.Add([]byte("no header at all, needle"), "needle")
	f.Add([]byte("Subject: a\x00b\r\n\r\nc\x00d\r\n"), "b")
	f.Add([]byte("Subject: x\r\n\r\n100% sure_thing C:\\path\r\n"), "%")
	f.Add([]byte("Subject: x\r\n\r\n"), "")
	f.Fuzz(func(t *testing.T, msg []byte, pattern string) {
		head, body := searchText(msg)
		if strings.IndexByte(head, 0) >= 0 || strings.IndexByte(body, 0) >= 0 {
			t.Fatalf("searchText holds a NUL: %q %q", head, body)
		}
		needles, _, ok := textNeedles(&goimap.SearchCriteria{Body: []string{pattern}})
		if !ok || len(needles) == 0 {
			return // not sent: the node matches
		}
		needle := needles[0].Text
		e := func() *lazyMessage { return &lazyMessage{body: msg, loaded: true} }
		if got, want := strings.Contains(body, needle), matchEntity(e().entity(), pattern, false); got != want {
			t.Errorf("BODY %q: kept text %v, matchEntity %v (body %q)", pattern, got, want, body)
		}
		if got, want := strings.Contains(head, needle) || strings.Contains(body, needle), matchEntity(e().entity(), pattern, true); got != want {
			t.Errorf("TEXT %q: kept text %v, matchEntity %v (head %q)", pattern, got, want, head)
		}
		if !bytes.Equal([]byte(needle), bytes.ToLower([]byte(pattern))) {
			t.Errorf("needle %q of %q is not the pattern lowered", needle, pattern)
		}
	})
}

// BenchmarkSearchText: the cost, at delivery, of the texts a
// store.TextSearcher keeps, for a 10 KiB plain-text message.
func BenchmarkSearchText(b *testing.B) {
	var msg bytes.Buffer
	msg.WriteString("From: a@example.test\r\nSubject: bench\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	for msg.Len() < 10<<10 {
		msg.WriteString("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\r\n")
	}
	b.SetBytes(int64(msg.Len()))
	for b.Loop() {
		searchText(msg.Bytes())
	}
}
