package mtasts_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/mtasts"
)

func TestParse(t *testing.T) {
	t.Parallel()
	body := "version: STSv1\r\nmode: enforce\r\nmx: MX2.example.org.\r\nmx: mx1.example.org\r\nmax_age: 86400\r\n"
	for _, m := range []mtasts.Mode{mtasts.Strict, mtasts.Lenient} {
		p, err := mtasts.Parse(body, m)
		if err != nil || p.Mode != "enforce" || strings.Join(p.MX, ",") != "mx1.example.org,mx2.example.org" || p.MaxAge != 86400 {
			t.Errorf("Parse(mode %d) = %+v, %v", m, p, err)
		}
	}
	// What both modes refuse.
	for body, want := range map[string]string{
		"mode: enforce\nmx: a.example\n":                       "version is \"\"",
		"version: STSv1\nmode: strict\nmx: a.example\n":        "mode \"strict\"",
		"version: STSv1\nmode: enforce\n":                      "no mx line",
		"version: STSv1\nmode: none\nmax_age: -1\n":            "max_age \"-1\"",
		"version: STSv1\nmode: testing\nmx: a\nmax_age: 1e3\n": "max_age \"1e3\"",
	} {
		for _, m := range []mtasts.Mode{mtasts.Strict, mtasts.Lenient} {
			if _, err := mtasts.Parse(body, m); err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, mtasts.ErrSyntax) {
				t.Errorf("Parse(%q, mode %d) = %v, want %q", body, m, err, want)
			}
		}
	}
}

// TestParseModes shows where the modes differ: a line that is not
// "key: value", and a max_age over a year.
func TestParseModes(t *testing.T) {
	t.Parallel()
	body := "version: STSv1\nmode: enforce\ngarbage\nmx: *.example.org\nmax_age: 99999999\n"
	if _, err := mtasts.Parse(body, mtasts.Strict); err == nil || !strings.Contains(err.Error(), `line "garbage" is not key: value`) {
		t.Errorf("strict Parse = %v, want the garbage line refused", err)
	}
	p, err := mtasts.Parse(body, mtasts.Lenient)
	if err != nil || p.MaxAge != mtasts.MaxMaxAge || len(p.MX) != 1 || p.MX[0] != "*.example.org" {
		t.Errorf("lenient Parse = %+v, %v; want the line skipped and max_age capped at %d", p, err, mtasts.MaxMaxAge)
	}
	p, err = mtasts.Parse("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999\n", mtasts.Strict)
	if err != nil || p.MaxAge != 99999999 {
		t.Errorf("strict Parse = %+v, %v; want max_age as written", p, err)
	}
}

// TestParsePolicyOfPolicy parses what Policy builds.
func TestParsePolicyOfPolicy(t *testing.T) {
	t.Parallel()
	text, _ := mtasts.Policy("testing", []string{"MX1.Example.org."}, 3600)
	p, err := mtasts.Parse(text, mtasts.Strict)
	if err != nil || p.Mode != "testing" || len(p.MX) != 1 || p.MX[0] != "mx1.example.org" || p.MaxAge != 3600 {
		t.Errorf("Parse(Policy) = %+v, %v", p, err)
	}
}

// FuzzParse checks that no input panics, that a policy the strict mode
// accepts reads the same in the lenient mode (up to the max_age cap), and
// that what Parse returns satisfies its documented invariants.
func FuzzParse(f *testing.F) {
	f.Add("version: STSv1\r\nmode: enforce\r\nmx: mx1.example.org\r\nmax_age: 604800\r\n")
	f.Add("version: STSv1\nmode: none\nmax_age: 0\n")
	f.Add("version: STSv1\nmode: testing\nmx: *.Example.ORG.\nbogus\nmax_age: 99999999999\n")
	f.Fuzz(func(t *testing.T, body string) {
		lp, lerr := mtasts.Parse(body, mtasts.Lenient)
		sp, serr := mtasts.Parse(body, mtasts.Strict)
		if serr == nil {
			if lerr != nil {
				t.Fatalf("strict accepts %q, lenient refuses: %v", body, lerr)
			}
			if lp.Mode != sp.Mode || strings.Join(lp.MX, "\n") != strings.Join(sp.MX, "\n") || lp.MaxAge != min(sp.MaxAge, mtasts.MaxMaxAge) {
				t.Fatalf("modes differ on %q: lenient %+v, strict %+v", body, lp, sp)
			}
		}
		if lerr != nil {
			return
		}
		if lp.MaxAge < 0 || lp.MaxAge > mtasts.MaxMaxAge {
			t.Fatalf("lenient max_age %d out of range for %q", lp.MaxAge, body)
		}
		if lp.Mode != "none" && len(lp.MX) == 0 {
			t.Fatalf("mode %q without mx for %q", lp.Mode, body)
		}
		for i, mx := range lp.MX {
			if mx != strings.ToLower(mx) || strings.HasSuffix(mx, ".") || i > 0 && lp.MX[i-1] > mx {
				t.Fatalf("mx %q not normalised/sorted (%q) for %q", mx, lp.MX, body)
			}
		}
	})
}
