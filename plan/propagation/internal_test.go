package propagation

import "testing"

func TestSerialLess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b uint32
		want bool
	}{
		{1, 2, true},
		{2, 1, false},
		{5, 5, false},
		{2026112301, 2026112302, true},
		{0xFFFFFFFF, 0, true}, // RFC 1982: 0 follows 2^32-1
		{0, 0xFFFFFFFF, false},
		{0xFFFFFFF0, 5, true},
		{0, 1 << 31, false}, // undefined: neither is newer
		{1 << 31, 0, false},
		{0, 1<<31 - 1, true},
	}
	for _, tt := range tests {
		if got := serialLess(tt.a, tt.b); got != tt.want {
			t.Errorf("serialLess(%d, %d) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
