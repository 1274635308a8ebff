package config

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// tokensOf is the meaning LayoutFree must keep: src's HCL tokens, line
// comments as line ends, inline comments left out, runs of line ends as
// one; ok is false when src does not lex.
func tokensOf(src []byte) (string, bool) {
	toks, diags := hclsyntax.LexConfig(src, "x.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return "", false
	}
	var b bytes.Buffer
	newline := true
	for _, t := range toks {
		typ := t.Type
		if typ == hclsyntax.TokenComment {
			if !bytes.HasSuffix(t.Bytes, []byte("\n")) {
				continue
			}
			typ = hclsyntax.TokenNewline
		}
		if typ == hclsyntax.TokenNewline {
			if !newline {
				b.WriteString("\n\x00")
			}
			newline = true
			continue
		}
		newline = false
		b.WriteString(strconv.Itoa(int(typ)) + "\x00" + string(t.Bytes) + "\x00")
	}
	return b.String(), true
}

// TestLayoutFreeKeepsTokens: two sources with the same LayoutFree form
// have the same tokens, so that the configuration digest never takes a
// change of meaning for a change of layout. Random edits (spaces, line
// ends, comments, quotes, braces, letters) of a source with strings,
// heredocs, comments and interpolations, seeded; and layout-only edits
// keep the form.
func TestLayoutFreeKeepsTokens(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	base := []byte(tricky + `domain "example.org" {
  dns    = provider.zonefile.z   # aligned
  server = server.mx1
  spf    = "v=spf1 mx # not a comment ~all"
  x      = a-b
  y      = a - b
  z      = [1, 2.5, "a  b", /* c */ var.x]
}
`)
	baseForm, ok := LayoutFree(base)
	if !ok {
		t.Fatal("LayoutFree of the base source failed")
	}
	baseToks, ok := tokensOf(base)
	if !ok {
		t.Fatal("base source does not lex")
	}
	inserts := []string{" ", "  ", "\t", "\n", "\n\n", "\r\n", "# c\n", "// c\n", "/* c */", "/*\n*/", `"`, "{", "}", "a", "-", "=", "$", "${", "<<EOT\n", "\\", "/", "*", "#"}
	same := 0
	for i := range 3000 {
		src := bytes.Clone(base)
		for range 1 + rng.IntN(3) {
			at := rng.IntN(len(src) + 1)
			if rng.IntN(4) == 0 && at < len(src) {
				src = append(src[:at], src[at+1:]...) // delete a byte
				continue
			}
			ins := inserts[rng.IntN(len(inserts))]
			src = append(src[:at], append([]byte(ins), src[at:]...)...)
		}
		form, ok := LayoutFree(src)
		if !ok {
			continue
		}
		toks, lexes := tokensOf(src)
		if !lexes {
			continue
		}
		if bytes.Equal(form, baseForm) {
			same++
			if toks != baseToks {
				t.Fatalf("seed %d, edit %d: same layout-free form, other tokens:\n%s", seed, i, src)
			}
		}
	}
	t.Logf("%d edits kept the form (layout only)", same)

	// Layout alone: the form stays.
	for _, src := range []string{
		"\n\n" + string(base),
		// CRLF line ends would change the heredocs' and interpolations'
		// kept bytes: outside them, they are layout.
		string(bytes.ReplaceAll(base, []byte("  server = server.mx1\n"), []byte("\tserver = server.mx1\r\n\r\n"))),
		string(bytes.ReplaceAll(base, []byte("server = server.mx1"), []byte("server     =    server.mx1   # why"))),
		string(bytes.ReplaceAll(base, []byte("  dns    ="), []byte("   /* lead */ dns ="))),
	} {
		if form, ok := LayoutFree([]byte(src)); !ok || !bytes.Equal(form, baseForm) {
			t.Errorf("layout-only edit changed the form:\n%s", src)
		}
	}
}
