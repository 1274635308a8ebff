package authres_test

import (
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/authres"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		id      string
		methods string
		err     bool
	}{
		{"mx.example.org; spf=pass smtp.mailfrom=a@b.example", "mx.example.org", "spf=pass", false},
		{"mx.example.org 1; none", "mx.example.org", "", false},
		{"mx.example.org (comment; with semicolon) ; dkim=pass (good sig) header.d=b.example header.i=\"@b.example\"; dmarc=fail", "mx.example.org", "dkim=pass dmarc=fail", false},
		{"mx.example.org; iprev=pass policy.iprev=192.0.2.1 (mail.b.example)", "mx.example.org", "iprev=pass", false},
		{"mx.example.org 2; spf=pass", "mx.example.org", "", true},
		{"mx.example.org; spf", "mx.example.org", "", true},
		{"mx.example.org; /1=pass", "mx.example.org", "", true}, // no method name (found by FuzzParse)
		{"(unterminated", "", "", true},
		{"", "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			id, results, err := authres.Parse(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("Parse(%q) error = %v, want error %v", tc.in, err, tc.err)
			}
			if tc.err {
				return
			}
			var got []string
			for _, r := range results {
				got = append(got, r.Method+"="+r.Value)
			}
			if id != tc.id || strings.Join(got, " ") != tc.methods {
				t.Errorf("Parse(%q) = %q, %v; want %q, %s", tc.in, id, got, tc.id, tc.methods)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("mx.example.org; spf=pass smtp.mailfrom=a@b.example")
	f.Add("mx.example.org 1; none")
	f.Add(`mx (c (nested)) ; dkim=pass header.d="q\"x" ; dmarc=fail reason="a b"`)
	f.Fuzz(func(t *testing.T, s string) {
		id, results, err := authres.Parse(s)
		if err != nil {
			return
		}
		if id == "" && len(results) > 0 {
			t.Fatalf("results without authserv-id for %q", s)
		}
		for _, r := range results {
			if r.Method == "" || r.Method != strings.ToLower(r.Method) {
				t.Fatalf("bad method %q for %q", r.Method, s)
			}
		}
	})
}
