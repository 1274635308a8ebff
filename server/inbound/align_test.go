package inbound

import (
	"net"
	"testing"

	"github.com/emersion/go-msgauth/dmarc"
)

func TestAligned(t *testing.T) {
	tests := []struct {
		a, b string
		mode dmarc.AlignmentMode
		want bool
	}{
		{"example.org", "example.org", dmarc.AlignmentStrict, true},
		{"Example.ORG.", "example.org", dmarc.AlignmentStrict, true},
		{"news.example.org", "example.org", dmarc.AlignmentStrict, false},
		{"news.example.org", "example.org", dmarc.AlignmentRelaxed, true},
		{"news.example.org", "mail.example.org", "", true}, // relaxed by default
		{"example.co.uk", "other.co.uk", dmarc.AlignmentRelaxed, false},
		{"a.example.co.uk", "b.example.co.uk", dmarc.AlignmentRelaxed, true},
		{"evil-example.org", "example.org", dmarc.AlignmentRelaxed, false},
		{"", "example.org", dmarc.AlignmentRelaxed, false},
	}
	for _, tc := range tests {
		if got := aligned(tc.a, tc.b, tc.mode); got != tc.want {
			t.Errorf("aligned(%q, %q, %q) = %v, want %v", tc.a, tc.b, tc.mode, got, tc.want)
		}
	}
	if got := orgDomain("a.b.example.co.uk"); got != "example.co.uk" {
		t.Errorf("orgDomain = %q", got)
	}
}

func TestReverseName(t *testing.T) {
	for ip, want := range map[string]string{
		"192.0.2.99":  "99.2.0.192",
		"2001:db8::1": "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2",
	} {
		if got := reverseName(parseIP(ip)); got != want {
			t.Errorf("reverseName(%s) = %s, want %s", ip, got, want)
		}
	}
}

func parseIP(s string) net.IP { return net.ParseIP(s) }
