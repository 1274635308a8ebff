package bufpool

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestReadUpTo(t *testing.T) {
	p := New(16, 1<<10)
	data := bytes.Repeat([]byte("0123456789"), 100) // 1000 bytes
	for _, tc := range []struct {
		name    string
		max     int
		wantLen int
	}{
		{"all of it, in small reads", 1000, 1000},
		{"more room than data", 4096, 1000},
		{"cut at max+1", 100, 101},
		{"empty cut", 0, 1},
	} {
		bp, err := p.ReadUpTo(iotest.OneByteReader(bytes.NewReader(data)), tc.max)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := *bp; len(got) != tc.wantLen || !bytes.Equal(got, data[:tc.wantLen]) {
			t.Errorf("%s: read %d bytes, want the first %d", tc.name, len(got), tc.wantLen)
		}
		p.Put(bp)
	}
	if bp, err := p.ReadUpTo(bytes.NewReader(nil), 10); err != nil || len(*bp) != 0 {
		t.Errorf("empty reader: %v, %v", bp, err)
	}
	boom := errors.New("boom")
	if _, err := p.ReadUpTo(io.MultiReader(bytes.NewReader(data[:10]), iotest.ErrReader(boom)), 100); !errors.Is(err, boom) {
		t.Errorf("failing reader: %v, want boom", err)
	}
}

func TestPutKeepsSmallBuffersOnly(t *testing.T) {
	p := New(8, 64)
	big := make([]byte, 0, 128)
	p.Put(&big)
	small := make([]byte, 5, 32)
	p.Put(&small)
	for i := 0; i < 10; i++ { // sync.Pool may drop, never return the big one
		if bp := p.Get(); cap(*bp) > 64 || len(*bp) != 0 {
			t.Fatalf("Get = len %d cap %d, want an empty buffer of at most 64", len(*bp), cap(*bp))
		}
	}
}
