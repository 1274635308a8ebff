package imap

import (
	"encoding/base64"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailctl/mailctl/server/store"
)

// TestBaseSubject: base subject extraction, RFC 5256 section 2.1.
func TestBaseSubject(t *testing.T) {
	for _, c := range []struct {
		in, want string
		reply    bool
	}{
		{"Re: [fwd: x]", "x", true},
		{"hello (fwd)", "hello", true},
		{"hello (FWD)  (fwd) ", "hello", true},
		{"Fwd: Re: [list] hello", "hello", true},
		{"[list] Re: hello", "hello", true},
		{"Re [x]: hi", "hi", true},
		{"RE: re: Fw: FWD: hi", "hi", true},
		{"[only]", "[only]", false},
		{"[a][b] text", "text", false},
		{"  Hello \t  world  ", "Hello world", false},
		{"Re:", "", true},
		{"Rebate: offer", "Rebate: offer", false},
		{"Fwdx: y", "Fwdx: y", false},
		{"[fwd: [fwd: Re: deep]]", "deep", true},
		{"[fwd: unterminated", "[fwd: unterminated", false},
		{"Re: (fwd)", "", true},
		{"plain", "plain", false},
	} {
		got, reply := baseSubject(c.in)
		if got != c.want || reply != c.reply {
			t.Errorf("baseSubject(%q) = %q, %v; want %q, %v", c.in, got, reply, c.want, c.reply)
		}
	}
}

// TestThreadReferencesRandom: REFERENCES on random reference graphs
// (loops, duplicates, missing parents, self references) ends, and puts
// every message in exactly one place of a tree without dummies below
// the root level but under merges. Seeded; the seed is printed on
// failure.
func TestThreadReferencesRandom(t *testing.T) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	subjects := []string{"a", "Re: a", "b", "Fwd: b", "", "c (fwd)"}
	for round := 0; round < 300; round++ {
		n := 1 + rng.Intn(12)
		var infos []*sortInfo
		for i := 0; i < n; i++ {
			var hdr strings.Builder
			id := ""
			if rng.Intn(5) > 0 {
				id = fmt.Sprintf("m%d@x", rng.Intn(15))
			}
			var refs []string
			for k := rng.Intn(4); k > 0; k-- {
				refs = append(refs, fmt.Sprintf("<m%d@x>", rng.Intn(15)))
			}
			if len(refs) > 0 {
				if rng.Intn(2) == 0 {
					hdr.WriteString("References: " + strings.Join(refs, " ") + "\r\n")
				} else {
					hdr.WriteString("In-Reply-To: " + strings.Join(refs, " ") + "\r\n")
				}
			}
			subject := subjects[rng.Intn(len(subjects))]
			in := &sortInfo{
				cseq: uint32(i + 1),
				m:    store.Message{UID: uint32(i + 1)},
				env:  &goimap.Envelope{MessageID: id, Subject: subject},
				hdr:  []byte(hdr.String() + "\r\n"),
				sent: time.Unix(int64(rng.Intn(5)), 0),
			}
			in.subject, in.reply = baseSubject(subject)
			infos = append(infos, in)
		}
		done := make(chan []*threadNode, 1)
		go func() { done <- references(infos) }()
		var roots []*threadNode
		select {
		case roots = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("seed %d round %d: REFERENCES does not end", seed, round)
		}
		seen := map[uint32]int{}
		var walk func(n *threadNode, depth int)
		walk = func(n *threadNode, depth int) {
			if depth > 100 {
				t.Fatalf("seed %d round %d: a loop in the threads", seed, round)
			}
			if n.info != nil {
				seen[n.info.m.UID]++
			} else if len(n.children) == 0 {
				t.Errorf("seed %d round %d: a dummy without children", seed, round)
			}
			for _, c := range n.children {
				walk(c, depth+1)
			}
		}
		for _, r := range roots {
			walk(r, 0)
		}
		for _, in := range infos {
			if seen[in.m.UID] != 1 {
				t.Fatalf("seed %d round %d: message %d appears %d times: %s", seed, round, in.m.UID, seen[in.m.UID], appendThreads(roots))
			}
		}
	}
}

func appendThreads(roots []*threadNode) string {
	var b []byte
	for _, r := range roots {
		b = append(b, '(')
		b = appendThread(b, r, true)
		b = append(b, ')')
	}
	return string(b)
}

// TestFieldValue: fieldValue reads a field as textproto.ReadHeader does.
func TestFieldValue(t *testing.T) {
	for _, hdr := range []string{
		"References: <a@x>\r\n <b@x>\r\n\t<c@x>\r\nSubject: s\r\n\r\n",
		"subject: s\r\nreferences:<a@x>  <b@x>\r\n",
		"X-References: <no@x>\r\nReferences: <a@x>\nIn-Reply-To: <i@x>\n\n",
		"Subject: s\r\n\r\nReferences: <body@x>\r\n",
		"References:\r\n <a@x>\r\n",
		"",
	} {
		want := readHeader(strings.NewReader(hdr))
		for _, key := range []string{"References", "In-Reply-To"} {
			if got := fieldValue([]byte(hdr), key); got != want.Get(key) {
				t.Errorf("fieldValue(%q, %s) = %q, ReadHeader %q", hdr, key, got, want.Get(key))
			}
		}
	}
}

// TestEnvelopeVersion1: summaries kept by the version before groups
// (same layout, version byte 1) still decode, so that FETCH ENVELOPE of
// messages delivered before parses no header.
func TestEnvelopeVersion1(t *testing.T) {
	env := &goimap.Envelope{Subject: "s", To: []goimap.Address{{Mailbox: "m", Host: "h"}}}
	b := encodeEnvelope(env)
	if b[0] != envelopeVersion {
		t.Fatalf("version byte %d", b[0])
	}
	b[0] = 1
	if got, ok := decodeEnvelope(b); !ok || !sameEnvelope(got, env) {
		t.Errorf("version 1: %+v, %v", got, ok)
	}
	b[0] = 3
	if _, ok := decodeEnvelope(b); ok {
		t.Error("version 3 decodes")
	}
}

// TestBinaryToBase64: the parts of a binary message that hold NUL go to
// base64, everything else stays byte for byte.
func TestBinaryToBase64(t *testing.T) {
	single := "Subject: bin\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\nab\x00cd\x00ef\r\n"
	multi := "Subject: m\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\npreamble\r\n--B\r\nContent-Type: text/plain\r\n\r\nhello\r\n--B\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding:\r\n binary\r\nX-Keep: 1\r\n\r\n\x00\x01\x02" + strings.Repeat("z", 100) + "\r\n--B--\r\nepilogue\r\n"
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"Subject: t\r\n\r\nno nul\r\n", "", false},
		{single, "Subject: bin\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nYWIAY2QAZWYNCg==", true},
		{multi, "Subject: m\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\npreamble\r\n--B\r\nContent-Type: text/plain\r\n\r\nhello\r\n--B\r\nContent-Type: application/octet-stream\r\nX-Keep: 1\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			lines76(base64.StdEncoding.EncodeToString([]byte("\x00\x01\x02"+strings.Repeat("z", 100)))) + "\r\n--B--\r\nepilogue\r\n", true},
		{"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\nx\x00\r\n", "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\nx\x00\r\n", false},
	} {
		got, ok := binaryToBase64([]byte(c.in))
		if ok != c.ok || (ok && string(got) != c.want) {
			t.Errorf("binaryToBase64(%q) = %q, %v\nwant %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// lines76 breaks s into lines of 76 characters, CRLF between them.
func lines76(s string) string {
	var lines []string
	for len(s) > 76 {
		lines, s = append(lines, s[:76]), s[76:]
	}
	return strings.Join(append(lines, s), "\r\n")
}
