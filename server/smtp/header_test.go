package smtp

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/mailctl/mailctl/server/internal/limits"
)

func TestScanHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want headerInfo
	}{
		{"simple", "From: a@b.c\r\nSubject: x\r\n\r\nbody", headerInfo{From: " a@b.c", FromCount: 1, Lines: 2, End: 27}},
		{"folded from", "from: Alice\r\n <a@b.c>\r\nFrom: x\r\n\r\n", headerInfo{From: " x", FromCount: 2, Lines: 3, End: 34}},
		{"folded from then field", "From: Alice\r\n\t<a@b.c>\r\nTo: x\r\n\r\n", headerInfo{From: " Alice\t<a@b.c>", FromCount: 1, Lines: 3, End: 32}},
		{"LF only", "Date: x\nMessage-ID: <a@b>\n\nbody", headerInfo{HasDate: true, HasMessageID: true, Lines: 2, End: 27}},
		{"folded received", "Received: from a\r\n\tby b; date\r\nreceived: x\r\n\r\n", headerInfo{Received: 2, Lines: 3, End: 46}},
		{"case-insensitive", "MESSAGE-ID: <x>\r\ndate: y\r\n\r\n", headerInfo{HasMessageID: true, HasDate: true, Lines: 2, End: 28}},
		{"no header", "\r\nbody only", headerInfo{End: 2}},
		{"no blank line", "Subject: x\r\n", headerInfo{Lines: 1, End: -1}},
		{"body without header", "hello world\r\n\r\n", headerInfo{Lines: 1, Malformed: "header line 1: no colon", End: 15}},
		{"leading continuation", " Date: x\r\n\r\n", headerInfo{Lines: 1, Malformed: "header line 1: continuation line with no field to continue", End: 12}},
		{"space in name", "Bad Name: x\r\nDate: y\r\n\r\n", headerInfo{HasDate: true, Lines: 2, Malformed: "header line 1: invalid field name", End: 24}},
		{"empty", "", headerInfo{End: -1}},
		{"stops at body", "Subject: x\r\n\r\nReceived: not a header\r\n", headerInfo{Lines: 1, End: 14}},
		// Header syntax receivers could read differently is noted and the
		// fields after it still count.
		{"blank before colon", "From : a\r\n\r\n", headerInfo{From: " a", FromCount: 1, Lines: 1, Malformed: "header line 1: blank before the colon", End: 12}},
		{"bare CR", "X-A: a\rFrom: <alice>\r\n\r\n", headerInfo{Lines: 1, Malformed: "header line 1: bare CR", End: 24}},
		{"line without colon", "Subject: x\r\nno colon\r\nFrom: a\r\n\r\n", headerInfo{From: " a", FromCount: 1, Lines: 3, Malformed: "header line 2: no colon", End: 33}},
		{"NUL", "Subject: a\x00b\r\n\r\n", headerInfo{Lines: 1, Malformed: "header line 1: NUL", End: 16}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scanHeader([]byte(tt.in)); got != tt.want {
				t.Errorf("scanHeader(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzScanHeader(f *testing.F) {
	for _, s := range []string{"From: a\r\n\r\nb", "Received: x\r\n\ty\r\n\r\n", "\n", ":\r\n\r\n", "a:\n b\n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h := scanHeader(b)
		if h.End < -1 || h.End > len(b) {
			t.Fatalf("End = %d outside -1..%d", h.End, len(b))
		}
		if h.End >= 0 {
			// The header ends just after an empty line.
			if b[h.End-1] != '\n' {
				t.Fatalf("End = %d is not after a newline", h.End)
			}
			rest := bytes.TrimSuffix(b[:h.End-1], []byte("\r"))
			if len(rest) > 0 && rest[len(rest)-1] != '\n' {
				t.Fatalf("End = %d is not after an empty line", h.End)
			}
		}
		if h.Received > bytes.Count(bytes.ToLower(b), []byte("received:")) {
			t.Fatalf("Received = %d, more than occurrences", h.Received)
		}
		// What we prepend stays a well-formed header in front of any input.
		tr := receivedField(traceInfo{Helo: string(b), RemoteIP: "192.0.2.1", Hostname: "mx.example", ID: "X", Date: time.Unix(0, 0)})
		if !strings.HasSuffix(tr, "\r\n") || strings.ContainsAny(strings.ReplaceAll(strings.TrimSuffix(tr, "\r\n"), "\r\n\t", ""), "\r\n") {
			t.Fatalf("bad Received field %q", tr)
		}
		got := scanHeader([]byte(tr + "\r\n"))
		if got.Received != 1 || got.End != len(tr)+2 {
			t.Fatalf("our Received field %q scans as %+v", tr, got)
		}
	})
}

func TestFoldReader(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		var in strings.Builder
		for range 1 + rng.IntN(5) {
			n := rng.IntN(3 * limits.MaxOutgoingLineBytes)
			if rng.IntN(3) == 0 {
				n = limits.MaxOutgoingLineBytes - 1 + rng.IntN(3)
			}
			in.WriteString(strings.Repeat(string(rune('a'+i%26)), n) + "\r\n")
		}
		out, err := io.ReadAll(iotest.OneByteReader(&foldReader{r: bufio.NewReader(strings.NewReader(in.String()))}))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(out), "\r\n") {
			if len(l) > limits.MaxOutgoingLineBytes {
				t.Fatalf("case %d: a line of %d bytes after folding", i, len(l))
			}
		}
		if got := strings.ReplaceAll(string(out), "\r\n ", ""); got != in.String() {
			t.Fatalf("case %d: unfolded output differs from the input", i)
		}
	}
	// At the limit nothing changes.
	line := strings.Repeat("y", limits.MaxOutgoingLineBytes) + "\r\n"
	out, _ := io.ReadAll(&foldReader{r: bufio.NewReader(strings.NewReader(line + line))})
	if string(out) != line+line {
		t.Errorf("lines of %d bytes were changed", limits.MaxOutgoingLineBytes)
	}
}
