package imap

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

var headerSectionSeeds = []string{
	"Subject: hello\r\nFrom: a@b\r\n\r\nbody\r\n",
	"subject: x\nX-Long: a\n b\n\tc\nSUBJECT:  y \r\n\r\n",
	"From: a\r\nTo: b\r\n",
	"From: a\r\n\r\n",
	"",
	"\r\n",
	" leading: space\r\n\r\n",
	"no colon\r\n\r\n",
	"Bad Key: v\r\n\r\n",
	": empty key\r\nSubject: s\r\n\r\n",
	"X(Y: 1\r\nx-foo: 2\r\nX-FOO : 3\r\n\r\n",
	"A: \r\r\nB: b\r\n\r\n",
	"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\nX: y\r\n\r\ninner body\r\n",
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\nTo: t\r\n\r\nx\r\n--b--\r\n",
}

// FuzzHeaderSection: headerSection (bodySection for header sections)
// answers byte for byte what imapserver.ExtractBodySection answers, for
// any message and any HEADER, HEADER.FIELDS or HEADER.FIELDS.NOT
// section, with or without a part and a partial range.
func FuzzHeaderSection(f *testing.F) {
	for i, s := range headerSectionSeeds {
		f.Add([]byte(s), "subject x-foo", uint8(i%4), uint16(i), uint16(7), uint8(i%3))
	}
	f.Fuzz(func(t *testing.T, msg []byte, names string, kind uint8, off, size uint16, part uint8) {
		bs := &goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader}
		fields := strings.Fields(names)
		switch kind % 4 {
		case 1:
			bs.HeaderFields = fields
		case 2:
			bs.HeaderFieldsNot = fields
		case 3:
			bs.HeaderFields = fields
			bs.HeaderFieldsNot = fields[:len(fields)/2]
		}
		if off%3 == 1 {
			bs.Partial = &goimap.SectionPartial{Offset: int64(off % 64), Size: int64(size % 64)}
		}
		switch part % 3 {
		case 1:
			bs.Part = []int{1}
		case 2:
			bs.Part = []int{1, 1}
		}
		want := imapserver.ExtractBodySection(bytes.NewReader(msg), bs)
		got := bodySection(bytes.NewReader(msg), bs)
		if !bytes.Equal(got, want) {
			t.Fatalf("section %+v of %q:\n got %q\nwant %q", bs, msg, got, want)
		}
	})
}

// hugeHeader returns a message whose header has lines lines of about
// lineLen bytes, then Subject.
func hugeHeader(lines, lineLen int, subject string) []byte {
	var b bytes.Buffer
	pad := strings.Repeat("x", max(lineLen-12, 1))
	for i := 0; i < lines; i++ {
		fmt.Fprintf(&b, "X-%d: %s\r\n", i%10, pad)
	}
	fmt.Fprintf(&b, "Subject: %s\r\n\r\nbody\r\n", subject)
	return b.Bytes()
}

// TestHeaderSectionLinear: the time of HEADER.FIELDS grows with the
// header, not its square (issue 17: 400 000 lines took 130 s in the
// library; 200 000, 21 s). Four times the lines may take at most eight
// times as long (a square would take 16), over the best of three runs.
func TestHeaderSectionLinear(t *testing.T) {
	bs := &goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader, HeaderFields: []string{"Subject"}}
	best := func(msg []byte) time.Duration {
		var d time.Duration
		for range 3 {
			start := time.Now()
			got := bodySection(bytes.NewReader(msg), bs)
			if e := time.Since(start); d == 0 || e < d {
				d = e
			}
			if string(got) != "Subject: s\r\n\r\n" {
				t.Fatalf("HEADER.FIELDS (Subject) = %.100q", got)
			}
		}
		return d
	}
	small, large := best(hugeHeader(50000, 8, "s")), best(hugeHeader(200000, 8, "s"))
	t.Logf("50 000 lines: %v, 200 000 lines: %v", small, large)
	if large > 8*small+50*time.Millisecond {
		t.Errorf("4x the header lines took %.1fx the time", float64(large)/float64(small))
	}
}
