package refresh

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestTokenFormInPieces: the configuration digest lexes a file piece by
// piece (no token slice of a whole large file); what it digests is the
// same as from one lexing of the whole file.
func TestTokenFormInPieces(t *testing.T) {
	var b strings.Builder
	b.WriteString("# head\n\nprovider \"zonefile\" \"z\" {\n  dir = \"zones\" # here\n}\n\n")
	for i := range 40 {
		fmt.Fprintf(&b, "domain \"d%d.example\" { /* inline */\n  dns    = provider.zonefile.z\n\n\n  server = server.mx1\n}\n# between\n\n", i)
		fmt.Fprintf(&b, "variable \"v%d\" {\n  default = <<EOT\n}\n# not a comment\nEOT\n}\n", i)
	}
	src := []byte(b.String())
	whole, ok := tokenForm("mail.hcl", src, len(src)+1)
	if !ok {
		t.Fatal("the whole file does not lex")
	}
	for _, size := range []int{1, 64, 4096} {
		got, ok := tokenForm("mail.hcl", src, size)
		if !ok || !bytes.Equal(got, whole) {
			t.Errorf("pieces of %d bytes: %d bytes digested (ok %v), want the %d of one lexing", size, len(got), ok, len(whole))
		}
	}
	if !bytes.Contains(whole, []byte("# not a comment")) {
		t.Error("a heredoc's text was dropped as a comment")
	}
}
