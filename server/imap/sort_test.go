package imap

import "testing"

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
