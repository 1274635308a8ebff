package mtasts_test

import (
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/mtasts"
)

func TestPolicy(t *testing.T) {
	t.Parallel()
	text, id := mtasts.Policy("enforce", []string{"MX1.Example.org."}, 0)
	want := "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.org\r\nmax_age: 604800\r\n"
	if text != want {
		t.Errorf("Policy text = %q, want %q", text, want)
	}
	if len(id) != 20 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Errorf("id = %q, want 20 hex digits", id)
	}
	if _, id2 := mtasts.Policy("testing", []string{"mx1.example.org"}, 0); id2 == id {
		t.Errorf("a different mode gives the same id %q", id)
	}
}
