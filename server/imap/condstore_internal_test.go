package imap

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzRewriteCondStore: any command line is either handed on as one
// CRLF-terminated line or answered BAD, never a panic; a line without
// CONDSTORE syntax is handed on unchanged.
func FuzzRewriteCondStore(f *testing.F) {
	for _, s := range []string{
		"a FETCH 1:* (FLAGS MODSEQ) (CHANGEDSINCE 5)",
		"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 5 VANISHED)",
		"a FETCH 1 MODSEQ",
		"a FETCH 1 (BODY[HEADER.FIELDS (A B)] MODSEQ)",
		"a FETCH 1 BODY[HEADER.FIELDS (A B)]",
		"a STORE 1 (UNCHANGEDSINCE 3) +FLAGS (\\Seen)",
		"a STORE 1 (UNCHANGEDSINCE",
		"a SELECT INBOX (CONDSTORE)",
		"a SELECT \"a b\" (QRESYNC (1 2 1:5 (1:2 3:4)))",
		"a EXAMINE INBOX (QRESYNC (1 2 1:*))",
		"a SELECT INBOX (QRESYNC (",
		"a STATUS INBOX (MESSAGES HIGHESTMODSEQ)",
		"a STATUS \"x\\\"y\" (HIGHESTMODSEQ)",
		"a ENABLE CONDSTORE QRESYNC IMAP4rev2",
		"a UID",
		"a FETCH",
		"a NOOP",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if strings.ContainsAny(line, "\r\n") {
			return
		}
		if mentionsModSeq(line) {
			p := &keyParser{s: line}
			p.searchKeys() // no panic
		}
		var out bytes.Buffer
		c := &conn{w: &out}
		ext := extFunc(func(tag, cmd, args string) []byte { return nil })
		c.ext.Store(&ext)
		c.cs.qresync.Store(strings.Contains(line, "Q"))
		in := []byte(line + "\r\n")
		c.startCondCmd(in)
		got, answered, err := c.rewriteCondStore(in)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if answered {
			if !bytes.Contains(out.Bytes(), []byte(" BAD ")) || !bytes.HasSuffix(out.Bytes(), []byte("\r\n")) {
				t.Errorf("%q answered %q", line, out.Bytes())
			}
			return
		}
		if !bytes.HasSuffix(got, []byte("\r\n")) || bytes.Count(got, []byte("\n")) != 1 {
			t.Errorf("%q handed on as %q", line, got)
		}
		up := strings.ToUpper(line)
		if !strings.Contains(up, "MODSEQ") && !strings.Contains(up, "SINCE") && !strings.Contains(up, "CONDSTORE") &&
			!strings.Contains(up, "QRESYNC") && !bytes.Equal(got, in) {
			t.Errorf("%q changed to %q", line, got)
		}
	})
}
