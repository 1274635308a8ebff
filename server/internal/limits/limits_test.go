package limits

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestHeaderReader(t *testing.T) {
	t.Parallel()
	line := "X-Pad: " + strings.Repeat("p", 90) + "\r\n" // 99 bytes
	body := strings.Repeat("x", 64<<10)
	tests := []struct {
		name    string
		msg     string
		tooLong bool
	}{
		{"small", "Subject: x\r\n\r\n" + body, false},
		{"LF only", "Subject: x\n\n" + body, false},
		{"no header", "\r\n" + body, false},
		{"lines at the limit", strings.Repeat("A: b\r\n", MaxHeaderLines) + "\r\nbody", false},
		{"one line too many", strings.Repeat("A: b\r\n", MaxHeaderLines+1) + "\r\nbody", true},
		{"bytes at the limit", strings.Repeat(line, 9000) + "Y: " + strings.Repeat("y", MaxHeaderBytes-9000*99-7) + "\r\n\r\n", false},
		{"one byte too many", strings.Repeat(line, 9000) + "Y: " + strings.Repeat("y", MaxHeaderBytes-9000*99-6) + "\r\n\r\n", true},
		{"no empty line, small", "Subject: x\r\nmore\r\n", false},
		{"no empty line, big", "Subject: " + strings.Repeat("x", MaxHeaderBytes), true},
		{"bare CR is not an end", "A: b\r\r\n" + strings.Repeat("A: b\r\n", MaxHeaderLines) + "\r\n", true},
		{"CR CR LF is not an end", "A: b\r\n\r\r\n" + strings.Repeat("A: b\r\n", MaxHeaderLines) + "\r\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, one := range []bool{false, true} {
				var r io.Reader = NewHeaderReader(strings.NewReader(tt.msg))
				if one {
					r = NewHeaderReader(iotest.OneByteReader(strings.NewReader(tt.msg)))
				}
				var out bytes.Buffer
				_, err := io.Copy(&out, r)
				if tt.tooLong {
					if !errors.Is(err, ErrHeaderTooLarge) {
						t.Fatalf("one byte at a time %v: err %v, want ErrHeaderTooLarge", one, err)
					}
					continue
				}
				if err != nil || out.String() != tt.msg {
					t.Fatalf("one byte at a time %v: err %v, %d of %d bytes passed", one, err, out.Len(), len(tt.msg))
				}
			}
		})
	}
}
