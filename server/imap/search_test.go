package imap

import (
	"bufio"
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"github.com/mailctl/mailctl/server/store"
)

// FuzzStoredMessage parses arbitrary stored message bodies the way FETCH
// and SEARCH do (header, ENVELOPE, BODYSTRUCTURE, text search): nothing
// may panic, whatever SMTP or APPEND stored.
func FuzzStoredMessage(f *testing.F) {
	f.Add([]byte("From: a@example.test\r\nSubject: hi\r\n\r\nbody\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x--\r\n"))
	f.Add([]byte("Subject: =?utf-8?q?caf=C3=A9?=\r\nDate: Mon, 23 Nov 2026 16:00:00 +0000\r\n\r\n"))
	f.Add([]byte("no header at all"))
	f.Add([]byte("Date: Mon, 01 Jan 2024 00:00:07 +0100\r\nFrom: \"A, B\" <a@example.test>, c@example.test\r\nTo: undisclosed:;\r\nSubject: x\r\n\r\n"))
	f.Add([]byte("Date: 1 Jan 2024 00:00 +0000 (UTC)\r\nIn-Reply-To: <a@b>\r\n\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		// Ours gives what the library gives, with its own date parsing.
		got, want := envelope(bytes.NewReader(body)), imapserver.ExtractEnvelope(readHeader(bytes.NewReader(body)))
		if !got.Date.Equal(want.Date) || got.Date.Format(time.RFC1123Z) != want.Date.Format(time.RFC1123Z) {
			t.Errorf("envelope date %v, library %v", got.Date, want.Date)
		}
		got.Date, want.Date = time.Time{}, time.Time{}
		// The library flattens groups and gives up on a field with an
		// address it cannot read (see parseAddresses); where it read a
		// field, ours without the group markers is the same.
		flat := *got
		for _, l := range []*[]goimap.Address{&flat.From, &flat.Sender, &flat.ReplyTo, &flat.To, &flat.Cc, &flat.Bcc} {
			var members []goimap.Address
			for _, a := range *l {
				if a.Host != "" {
					members = append(members, a)
				}
			}
			*l = members
		}
		for _, l := range [][2]*[]goimap.Address{{&flat.From, &want.From}, {&flat.Sender, &want.Sender}, {&flat.ReplyTo, &want.ReplyTo}, {&flat.To, &want.To}, {&flat.Cc, &want.Cc}, {&flat.Bcc, &want.Bcc}} {
			if len(*l[1]) == 0 {
				*l[0] = nil
			}
		}
		if !reflect.DeepEqual(&flat, want) {
			t.Errorf("envelope %+v, library %+v", got, want)
		}
		// The encoding kept in the store gives the same ENVELOPE.
		made := envelope(bytes.NewReader(body))
		dec, ok := decodeEnvelope(encodeEnvelope(made))
		if !ok {
			t.Fatalf("encoded envelope %+v does not decode", made)
		}
		if !sameEnvelope(dec, made) {
			t.Errorf("decoded envelope %+v, made %+v", dec, made)
		}
		if cached := envelopeBytes(cachedHeader(body)); !reflect.DeepEqual(cached.Subject, want.Subject) || !reflect.DeepEqual(cached.From, made.From) {
			t.Errorf("envelope from the cached header %+v, library %+v", cached, want)
		}
		imapserver.ExtractBodyStructure(bytes.NewReader(body))
		l := &lazyMessage{m: store.Message{UID: 1, Size: int64(len(body)), InternalDate: time.Now()}, body: body, loaded: true}
		matchCriteria(l, 1, &goimap.SearchCriteria{
			Header:    []goimap.SearchCriteriaHeaderField{{Key: "Subject", Value: "hi"}},
			Text:      []string{"hello"},
			Body:      []string{"body"},
			SentSince: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		})
	})
}

// cachedHeader is the header the store caches for body: through the first
// empty line, or all of it.
func cachedHeader(body []byte) []byte {
	if bytes.HasPrefix(body, []byte("\r\n")) {
		return body[:2]
	}
	if bytes.HasPrefix(body, []byte("\n")) {
		return body[:1]
	}
	for i := range body {
		if body[i] != '\n' {
			continue
		}
		if bytes.HasPrefix(body[i+1:], []byte("\n")) {
			return body[:i+2]
		}
		if bytes.HasPrefix(body[i+1:], []byte("\r\n")) {
			return body[:i+3]
		}
	}
	return body
}

// FuzzCachedHeaderSearch: header SEARCH keys give the same answer from the
// header cached in the index (with its shortcut) as from the message file.
func FuzzCachedHeaderSearch(f *testing.F) {
	f.Add([]byte("Subject: bench message 4242\r\n\r\nbody\r\n"), "Subject", "MESSAGE 4242")
	f.Add([]byte("Subject: bench\r\n message 4242\r\n\r\n"), "subject", "bench message")
	f.Add([]byte("Subject:   spaced   \r\n\t  out\r\nFrom: a\r\n\r\n"), "Subject", "spaced out")
	f.Add([]byte("Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\n"), "Subject", "café")
	f.Add([]byte("Subject : trailing key space\r\n\r\n"), "Subject", "key")
	f.Add([]byte(" bad first line\r\nSubject: x\r\n\r\n"), "Subject", "x")
	f.Add([]byte("Subject: x\r\nno colon\r\nTo: y\r\n\r\n"), "To", "y")
	f.Add([]byte("Subject: \xe2\x82\r\n\xacx\r\n\r\n"), "Subject", "\u20acx")
	f.Add([]byte("Subject: Kelvin\r\n\r\n"), "Subject", "\u212aelvin")
	f.Add([]byte("X-Empty:\r\n\r\n"), "X-Empty", "")
	f.Add([]byte("Subject: ab\r\r\n\r\n"), "Subject", "b\r")
	f.Add([]byte("Subject: x\r\n\r ab\r\n\r\n"), "Subject", "\r ab")
	f.Fuzz(func(t *testing.T, body []byte, key, pattern string) {
		c := &goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: key, Value: pattern}}}
		m := store.Message{UID: 1, Size: int64(len(body)), InternalDate: time.Now()}
		fromFile := matchCriteria(&lazyMessage{m: m, body: body, loaded: true}, 1, c)
		fromCache := matchCriteria(&lazyMessage{m: m, hdr: cachedHeader(body), loaded: true}, 1, c)
		if fromFile != fromCache {
			t.Errorf("SEARCH HEADER %q %q: %v from the file, %v from the cached header", key, pattern, fromFile, fromCache)
		}
	})
}

// sameEnvelope compares envelopes as they are written: dates by their
// instant and offset, empty and nil lists alike.
func sameEnvelope(a, b *goimap.Envelope) bool {
	_, ao := a.Date.Zone()
	_, bo := b.Date.Zone()
	if !a.Date.Equal(b.Date) || ao != bo || a.Date.IsZero() != b.Date.IsZero() {
		return false
	}
	norm := func(e goimap.Envelope) goimap.Envelope {
		e.Date = time.Time{}
		for _, l := range []*[]goimap.Address{&e.From, &e.Sender, &e.ReplyTo, &e.To, &e.Cc, &e.Bcc} {
			if len(*l) == 0 {
				*l = nil
			}
		}
		if len(e.InReplyTo) == 0 {
			e.InReplyTo = nil
		}
		return e
	}
	return reflect.DeepEqual(norm(*a), norm(*b))
}

// FuzzDecodeEnvelope: whatever the store holds, decoding an envelope does
// not panic, and what decodes encodes back to the same bytes.
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(encodeEnvelope(&goimap.Envelope{Subject: "s", From: []goimap.Address{{Name: "n", Mailbox: "m", Host: "h"}}}))
	f.Add(encodeEnvelope(&goimap.Envelope{Date: time.Date(2026, 11, 23, 16, 0, 0, 0, time.FixedZone("", 3600)), InReplyTo: []string{"a@b"}}))
	f.Add([]byte{1, 1, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		env, ok := decodeEnvelope(b)
		if !ok {
			return
		}
		if again := encodeEnvelope(env); !bytes.Equal(again, b) {
			// Varints have more than one spelling: compare decoded.
			env2, ok := decodeEnvelope(again)
			if !ok || !sameEnvelope(env, env2) {
				t.Errorf("re-encoded envelope differs: %+v, %+v", env, env2)
			}
		}
	})
}

// FuzzBodySearch: the BODY key gives the same answer without go-message
// (plainText, containsFold) as through it (matchEntity).
func FuzzBodySearch(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nHello needle4242 World\r\n"), "NEEDLE4242")
	f.Add([]byte("Subject: x\r\n\r\nHello World\r\n"), "world")
	f.Add([]byte("Subject: x\r\n\r\nHello W\r\norld\r\n"), "wORLD")
	f.Add([]byte("Content-Type: text/plain; charset=UTF-8\r\n\r\ncaf\xc3\xa9 \xe2\x84\xaaelvin\r\n"), "kelvin")
	f.Add([]byte("Content-Type: text/plain\r\n\r\n\xc4\xb0stanbul\r\n"), "istanbul")
	f.Add([]byte("Content-Type: text/plain\r\n\r\n\xff\xfeabc\r\n"), "abc")
	f.Add([]byte("Content-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9\r\n"), "caf")
	f.Add([]byte("Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nne=\r\nedle\r\n"), "needle")
	f.Add([]byte("Content-Type: image/png\r\n\r\nneedle\r\n"), "needle")
	f.Add([]byte("Content-Type: message/rfc822\r\n\r\nSubject: y\r\n\r\nneedle\r\n"), "needle")
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nneedle\r\n--x--\r\n"), "needle")
	f.Add([]byte("Content-Type: bad;;\r\n\r\nneedle\r\n"), "needle")
	f.Add([]byte("no header at all, needle"), "needle")
	f.Add([]byte("\r\nneedle"), "NEEDLE")
	f.Add([]byte("Subject: x\r\n\r\nzzZz"), "zz")
	f.Add([]byte("Subject: x\r\n\r\n"), "")
	f.Add([]byte("Content-Type: text/plain;\r\n\tcharset=\"utf-8\"\r\nSubject: x\r\n\r\nneedle"), "needle")
	f.Add([]byte("content-type :  text/plain  \r\n \r\n  ; charset=us-ascii\r\nContent-Transfer-Encoding: 8BIT\r\n\r\nNeedle"), "needle")
	f.Add([]byte("Content-Type: text/plain\r\nContent-Type: text/html\r\n\r\nneedle"), "needle")
	f.Add([]byte("Content-Type: text/plain\r\r\n\r\nneedle"), "needle")
	f.Add([]byte("Subject: x\n\nneedle"), "needle")
	f.Add([]byte("Subject: x\r\n"), "x")
	f.Add([]byte(": x\r\n\r\nneedle"), "needle")
	f.Fuzz(func(t *testing.T, body []byte, pattern string) {
		m := store.Message{UID: 1, Size: int64(len(body)), InternalDate: time.Now()}
		fast := &lazyMessage{m: m, body: body, loaded: true}
		slow := &lazyMessage{m: m, body: body, loaded: true}
		got := fast.matchBody(pattern)
		want := matchEntity(slow.entity(), pattern, false)
		if got != want {
			_, kind := fast.plainText()
			t.Errorf("BODY %q: %v, go-message %v (plainText kind %d)", pattern, got, want, kind)
		}
		if end, ct, cte, ok := scanHeader(body); ok {
			rd := bytes.NewReader(body)
			br := bufio.NewReader(rd)
			h, err := textproto.ReadHeader(br)
			wantEnd := len(body) - rd.Len() - br.Buffered()
			if err != nil || end != wantEnd || ct != h.Get("Content-Type") || cte != h.Get("Content-Transfer-Encoding") {
				t.Errorf("scanHeader: %d %q %q, textproto.ReadHeader %d %q %q (%v)", end, ct, cte, wantEnd, h.Get("Content-Type"), h.Get("Content-Transfer-Encoding"), err)
			}
		}
		if c := (&goimap.SearchCriteria{Body: []string{pattern}}); matchCriteria(&lazyMessage{m: m, body: body, loaded: true}, 1, c) != want {
			t.Errorf("SEARCH BODY %q: not %v", pattern, want)
		}
	})
}

// TestFoldsToASCII: foldsToASCII lists every character beyond ASCII whose
// lower case is ASCII, which containsFold relies on.
func TestFoldsToASCII(t *testing.T) {
	var got [][]byte
	for r := rune(utf8.RuneSelf); r <= unicode.MaxRune; r++ {
		if unicode.ToLower(r) < utf8.RuneSelf {
			got = append(got, []byte(string(r)))
		}
	}
	if !reflect.DeepEqual(got, foldsToASCII) {
		t.Errorf("characters folding to ASCII: %q, foldsToASCII %q", got, foldsToASCII)
	}
}

func TestIndexFoldASCII(t *testing.T) {
	for _, tc := range []struct {
		s, p string
		want int
	}{
		{"Hello needle4242 x", "needle4242", 6},
		{"Hello NEEDLE4242", "needle4242", 6},
		{"needle424", "needle4242", -1},
		{"4242 needle4242", "needle4242", 5},
		{"xx4242", "4242", 2},
		{"aAbBaB", "ab", 1},
		{"aAxBaB", "ab", 4},
		{"Zzz", "zz", 0},
		{"xZ", "zz", -1},
		{"", "a", -1},
		{"a-b", "-", 1},
		{"ab", "abc", -1},
	} {
		if got := indexFoldASCII([]byte(tc.s), tc.p); got != tc.want {
			t.Errorf("indexFoldASCII(%q, %q) = %d, want %d", tc.s, tc.p, got, tc.want)
		}
	}
}

// TestAppendFetch: the usual messages are written without the library;
// what the library may write otherwise is left to it.
func TestAppendFetch(t *testing.T) {
	m := &store.Message{UID: 7, Size: 1234, InternalDate: time.Date(2026, 12, 6, 9, 8, 7, 0, time.UTC), Flags: []string{`\Seen`, "$Label1"}}
	env := &goimap.Envelope{
		Date:      time.Date(2024, 1, 1, 0, 0, 7, 0, time.UTC),
		Subject:   `bench "message" 4242`,
		From:      []goimap.Address{{Name: "Sender 7", Mailbox: "sender7", Host: "example.test"}},
		To:        []goimap.Address{{Name: "Bench User", Mailbox: "bench", Host: "bench.test"}},
		MessageID: "bench.7@example.test",
	}
	opts := &goimap.FetchOptions{UID: true, Flags: true, RFC822Size: true, Envelope: true, InternalDate: true}
	got, ok := appendFetch(nil, 3, m, opts, false, env)
	want := `* 3 FETCH (UID 7 FLAGS (\Seen $Label1) INTERNALDATE " 6-Dec-2026 09:08:07 +0000" RFC822.SIZE 1234 ENVELOPE ("Mon, 01 Jan 2024 00:00:07 +0000" "bench \"message\" 4242" (("Sender 7" NIL "sender7" "example.test")) (("Sender 7" NIL "sender7" "example.test")) (("Sender 7" NIL "sender7" "example.test")) (("Bench User" NIL "bench" "bench.test")) NIL NIL NIL "<bench.7@example.test>"))` + "\r\n"
	if !ok || string(got) != want {
		t.Errorf("appendFetch = %v\n%s\nwant\n%s", ok, got, want)
	}
	for _, tc := range []struct {
		name  string
		m     store.Message
		env   goimap.Envelope
		flags bool
	}{
		{"mailbox beyond ASCII", *m, goimap.Envelope{From: []goimap.Address{{Mailbox: "jos\u00e9", Host: "example.test"}}}, false},
		{"control character", *m, goimap.Envelope{Subject: "a\tb"}, false},
		{"long subject", *m, goimap.Envelope{Subject: strings.Repeat("x", 4097)}, false},
		{"odd flag", store.Message{UID: 1, Flags: []string{"foo!bar"}}, goimap.Envelope{}, true},
	} {
		b := []byte("kept")
		if out, ok := appendFetch(b, 1, &tc.m, &goimap.FetchOptions{Flags: tc.flags, Envelope: !tc.flags}, false, &tc.env); ok || string(out) != "kept" {
			t.Errorf("%s: appendFetch = %v, %q", tc.name, ok, out)
		}
	}
}
