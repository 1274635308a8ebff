package imap

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailctl/mailctl/server/store"
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

// TestUIDRanges: the range arithmetic behind VANISHED (EARLIER): known
// UIDs with "*" and overlaps, the store's records, the messages present.
func TestUIDRanges(t *testing.T) {
	msgs := func(uids ...uint32) []store.Message {
		var out []store.Message
		for _, u := range uids {
			out = append(out, store.Message{UID: u})
		}
		return out
	}
	set, err := parseNumSet("9:7,1:3,*,2:4,20:30")
	if err != nil {
		t.Fatal(err)
	}
	norm := normRanges(set, 25)
	if want := (uidRanges{{1, 4}, {7, 9}, {20, 25}}); !slices.Equal(norm, want) {
		t.Errorf("normRanges = %v, want %v", norm, want)
	}
	if got := normRanges(goimapSeq(0, 0), 0); len(got) != 0 {
		t.Errorf("normRanges of * in an empty mailbox = %v", got)
	}
	rec := uidRanges{{2, 2}, {5, 8}, {22, 40}}
	if got, want := rec.intersect(norm), (uidRanges{{2, 2}, {7, 8}, {22, 25}}); !slices.Equal(got, want) {
		t.Errorf("intersect = %v, want %v", got, want)
	}
	// Not complete: every asked-for UID that is not present.
	if got, want := norm.without(msgs(1, 3, 4, 8, 20, 21, 25, 26)), (uidRanges{{2, 2}, {7, 7}, {9, 9}, {22, 24}}); !slices.Equal(got, want) {
		t.Errorf("without = %v, want %v", got, want)
	}
	if got := (uidRanges{{1, 3}}).without(msgs(1, 2, 3)); len(got) != 0 {
		t.Errorf("without all = %v", got)
	}
	if got := string(uidRanges{{1, 1}, {3, 5}}.appendTo(nil)); got != "1,3:5" {
		t.Errorf("appendTo = %q", got)
	}
	if got := string(vanishedLine(msgs(4, 5, 6, 9), []uint32{1, 2, 4})); got != "* VANISHED 4:5,9\r\n" {
		t.Errorf("vanishedLine = %q", got)
	}
}

func goimapSeq(a, b uint32) goimap.SeqSet { return goimap.SeqSet{{Start: a, Stop: b}} }
