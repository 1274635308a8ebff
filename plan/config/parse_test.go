package config

import (
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// tricky holds top-level blocks whose strings, heredocs, comments and
// interpolations contain lines that look like the end of a block.
const tricky = `# a comment }
variable "a" {
  default = <<EOT
}
domain "fake" {
}
EOT
}
/* a block comment
}
server "fake" {
}
*/
variable "b" {
  default = "${
  upper("x}")
}"
}
variable "c" { default = "}\"}" } # }
variable "d" {
  default = <<-X
    }
    X
}
variable "e" {
  description = "$${ not a template }"
}
`

// TestParseFileInPiecesIsOneParse: a file cut into pieces (as small as one
// block each) parses to the same blocks, attributes and ranges as one
// parse of the whole, whatever hides a "}" at the start of a line.
func TestParseFileInPiecesIsOneParse(t *testing.T) {
	var big strings.Builder
	big.WriteString(tricky)
	for i := range 50 {
		fmt.Fprintf(&big, "domain \"d%d.example\" {\n  dns = provider.zonefile.z\n  dkim {\n    selector = \"s%d\"\n  }\n}\n\n", i, i)
		fmt.Fprintf(&big, "user \"u@d%d.example\" {\n  password_hash = \"x\"\n}\n", i)
	}
	big.WriteString(tricky)
	src := []byte(big.String())
	whole, diags := hclsyntax.ParseConfig(src, "mail.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, size := range []int{1, 100, 1000, 1 << 20} {
		pieces := SplitTopLevel(src, size)
		if size == 1 && len(pieces) != 2*50+2*5 {
			t.Errorf("size %d: %d pieces, want one per top-level block (110)", size, len(pieces))
		}
		got, diags := parseFile(src, "mail.hcl", size)
		if len(diags) > 0 {
			t.Fatalf("size %d: %v", size, diags)
		}
		want := whole.Body.(*hclsyntax.Body)
		body := got.Body.(*hclsyntax.Body)
		if len(body.Blocks) != len(want.Blocks) {
			t.Fatalf("size %d: %d blocks, want %d", size, len(body.Blocks), len(want.Blocks))
		}
		for i, b := range body.Blocks {
			w := want.Blocks[i]
			if b.Type != w.Type || !reflect.DeepEqual(b.Labels, w.Labels) || b.Range() != w.Range() || b.Body.SrcRange != w.Body.SrcRange {
				t.Errorf("size %d: block %d is %s %v at %v, want %s %v at %v", size, i, b.Type, b.Labels, b.Range(), w.Type, w.Labels, w.Range())
			}
			for n, a := range b.Body.Attributes {
				if wa := w.Body.Attributes[n]; wa == nil || a.SrcRange != wa.SrcRange {
					t.Errorf("size %d: block %d attribute %s at %v, want %v", size, i, n, a.SrcRange, wa)
				}
			}
		}
		if body.SrcRange != want.SrcRange || body.EndRange != want.EndRange {
			t.Errorf("size %d: body range %v/%v, want %v/%v", size, body.SrcRange, body.EndRange, want.SrcRange, want.EndRange)
		}
	}
}

// TestParseFileErrorsAsOneParse: a file with an error anywhere reports
// exactly the diagnostics of one parse of the whole file.
func TestParseFileErrorsAsOneParse(t *testing.T) {
	var b strings.Builder
	for i := range 20 {
		fmt.Fprintf(&b, "domain \"d%d.example\" {\n  dns = provider.zonefile.z\n}\n", i)
	}
	good := b.String()
	for name, src := range map[string]string{
		"unclosed block":    good + "domain \"x\" {\n  dns = 1\n",
		"stray brace":       "}\n" + good,
		"unterminated doc":  good[:40] + "x = <<EOT\n}\n" + good[40:],
		"bad string middle": good[:len(good)/2] + "\"\n}\n" + good[len(good)/2:],
		"duplicate attr":    "a = 1\n" + good + "a = 2\n",
	} {
		want := hclsyntax.ParseConfig
		_, wd := want([]byte(src), "mail.hcl", hcl.InitialPos)
		_, gd := parseFile([]byte(src), "mail.hcl", 1)
		if wd.Error() != gd.Error() {
			t.Errorf("%s: diagnostics\n%v\nwant\n%v", name, gd, wd)
		}
	}
}

// TestLoadKeepsNoSyntaxTree: after Load, the configuration holds the
// files' bytes (for diagnostics) but not their syntax trees, which are
// several times its size: a plan of thousands of domains kept them all
// along.
func TestLoadKeepsNoSyntaxTree(t *testing.T) {
	var b strings.Builder
	b.WriteString("provider \"zonefile\" \"z\" {\n  dir = \"zones\"\n}\n")
	b.WriteString("server \"mx1\" {\n  hostname = \"mx1.d0.example\"\n  ipv4 = \"203.0.113.10\"\n  tls {\n    acme_email = \"a@d0.example\"\n  }\n}\n")
	const n = 500
	for i := range n {
		fmt.Fprintf(&b, "domain \"d%d.example\" {\n  dns = provider.zonefile.z\n  server = server.mx1\n}\n", i)
		for j := range 5 {
			fmt.Fprintf(&b, "user \"u%d@d%d.example\" {\n  name = \"User %d\"\n  password_hash = \"$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$5yq2Vt0Jc6QFd6nOgxwtWkl3e1gGugcqo8xiP0WDJwQ\"\n}\n", j, i, j)
		}
	}
	src := []byte(b.String())
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	cfg, diags := LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": src}, LoadOptions{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	kept := int64(heap()) - int64(before)
	runtime.KeepAlive(cfg)
	if len(cfg.Users) != 5*n {
		t.Fatalf("%d users", len(cfg.Users))
	}
	// The Config is about 1.5 times the source; its syntax tree was 6.
	if limit := int64(3 * len(src)); kept > limit {
		t.Errorf("Load keeps %d KiB for a %d KiB file, want at most %d KiB", kept>>10, len(src)>>10, limit>>10)
	}
	if f := cfg.Files["mail.hcl"]; f == nil || string(f.Bytes) != string(src) {
		t.Error("Files lost the source bytes diagnostics print from")
	}
}

// TestFormatFileInPieces: formatting a file piece by piece gives what
// hclwrite.Format gives for the whole file: misaligned attributes, odd
// indentation, blank lines and comments at the cuts.
func TestFormatFileInPieces(t *testing.T) {
	var b strings.Builder
	b.WriteString("# head\n\n\n")
	b.WriteString(tricky)
	for i := range 300 {
		fmt.Fprintf(&b, "domain \"d%d.example\" {\n dns = provider.zonefile.z\n      server=server.mx1\n  dmarc {\n policy = \"none\"\n    rua = [\"mailto:a@b\",\"mailto:c@d\"]\n  }\n}\n", i)
		if i%7 == 0 {
			b.WriteString("\n\n# a comment between blocks\n")
		}
		fmt.Fprintf(&b, "user \"u@d%d.example\" { password_hash = \"x\" }\n", i)
	}
	src := []byte(b.String())
	if len(SplitTopLevel(src, PieceSize)) < 2 {
		t.Fatal("the test file is one piece")
	}
	got, diags := FormatFile(src, "mail.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if want := hclwrite.Format(src); string(got) != string(want) {
		t.Errorf("formatted in pieces differs from hclwrite.Format of the whole file")
	}
	if _, diags := FormatFile([]byte("domain \"x\" {\n"), "bad.hcl"); !diags.HasErrors() {
		t.Error("FormatFile of a broken file reported no error")
	}
	// Errors in a later piece, and a top-level attribute set in two
	// pieces, are those of one parse of the whole file.
	for name, bad := range map[string]string{
		"broken last piece": string(src) + "domain \"x\" {\n",
		"duplicate":         "x = 1\n" + string(src) + "x = 2\n",
	} {
		out, diags := FormatFile([]byte(bad), "mail.hcl")
		_, want := hclsyntax.ParseConfig([]byte(bad), "mail.hcl", hcl.InitialPos)
		if out != nil || !diags.HasErrors() || diags.Error() != want.Error() {
			t.Errorf("%s: FormatFile = %d bytes, %v; want nil and %v", name, len(out), diags, want)
		}
	}
}

// TestLoadStreamingIsLoad: a configuration without variables, whose user
// and alias blocks are decoded piece by piece while the file is parsed,
// loads to the same users, aliases, domains and diagnostics as one with a
// variable (decoded after the whole parse).
func TestLoadStreamingIsLoad(t *testing.T) {
	var b strings.Builder
	b.WriteString("provider \"zonefile\" \"z\" {\n  dir = \"zones\"\n}\n")
	b.WriteString("server \"mx1\" {\n  hostname = \"mx1.d0.example\"\n  ipv4 = \"203.0.113.10\"\n  tls {\n    acme_email = \"a@d0.example\"\n  }\n}\n")
	for i := range 300 {
		fmt.Fprintf(&b, "domain \"d%d.example\" {\n  dns = provider.zonefile.z\n  server = server.mx1\n}\n", i)
		fmt.Fprintf(&b, "user \"u@d%d.example\" {\n  name = \"U %d\"\n  password_hash = \"$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$5yq2Vt0Jc6QFd6nOgxwtWkl3e1gGugcqo8xiP0WDJwQ\"\n  aliases = [\"a%d@d%d.example\"]\n}\n", i, i, i, i)
		fmt.Fprintf(&b, "alias \"postmaster@d%d.example\" {\n  to = [\"u@d%d.example\"]\n}\n", i, i)
		if i%50 == 0 {
			fmt.Fprintf(&b, "user \"not an address %d\" {\n  password_hash = \"nope\"\n}\n", i)
			b.WriteString("user \"two\" \"labels\" {\n  password_hash = \"x\"\n}\n")
		}
	}
	src := b.String()
	if len(SplitTopLevel([]byte(src), PieceSize)) < 3 {
		t.Fatal("the test file is one piece")
	}
	load := func(src string) (*Config, hcl.Diagnostics) {
		return LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(src)}, LoadOptions{})
	}
	streamed, sd := load(src)
	whole, wd := load("variable \"x\" {\n  default = \"y\"\n}\n" + src)
	if len(sd) == 0 || len(sd) != len(wd) {
		t.Fatalf("%d diagnostics streamed, %d whole (want the same, several):\n%v\n%v", len(sd), len(wd), sd, wd)
	}
	summary := func(diags hcl.Diagnostics) []string {
		var out []string
		for _, d := range sortDiags(diags) {
			out = append(out, d.Summary+": "+d.Detail)
		}
		return out
	}
	if !reflect.DeepEqual(summary(sd), summary(wd)) {
		t.Errorf("diagnostics differ:\n%v\n%v", summary(sd), summary(wd))
	}
	if streamed == nil || whole == nil || len(streamed.Users) != len(whole.Users) || len(streamed.Users) < 300 {
		t.Fatalf("users: streamed %v, whole %v", streamed, whole)
	}
	for i := range streamed.Users {
		s, w := *streamed.Users[i], *whole.Users[i]
		s.DeclRange, w.DeclRange = hcl.Range{}, hcl.Range{} // the variable moved the text
		if !reflect.DeepEqual(s, w) {
			t.Errorf("user %d: streamed %+v, whole %+v", i, s, w)
		}
	}
	if len(streamed.Aliases) != 300 || len(whole.Aliases) != 300 || len(streamed.Domains) != 300 || streamed.Aliases[299].Address != whole.Aliases[299].Address {
		t.Errorf("aliases %d/%d, domains %d", len(streamed.Aliases), len(whole.Aliases), len(streamed.Domains))
	}
}
