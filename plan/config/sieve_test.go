package config_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/server/sieve"
)

func loadDir(t *testing.T, files map[string]string) (*config.Config, string) {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, diags := config.Load(dir, config.LoadOptions{Getenv: getenv})
	var out bytes.Buffer
	config.WriteDiagnostics(&out, cfgFiles(cfg), diags, false)
	return cfg, out.String()
}

func cfgFiles(c *config.Config) map[string]*hcl.File {
	if c == nil {
		return nil
	}
	return c.Files
}

func TestSieveFileErrorsAtFileLineCol(t *testing.T) {
	src := strings.Replace(base, `quota         = "10GiB"`, `quota         = "10GiB"
  sieve         = file("sieve/alice.sieve")`, 1)
	script := "require \"fileinto\";\nif header :frob \"a\" \"b\" { keep; }\nfrobnicate;\n"
	_, out := loadDir(t, map[string]string{"mail.hcl": src, "sieve/alice.sieve": script})
	for _, want := range []string{
		"sieve/alice.sieve:2:11: Error: Invalid Sieve script: header: unknown tag :frob (user alice@example.org).",
		"sieve/alice.sieve:3:1: Error: Invalid Sieve script: unknown command \"frobnicate\" (user alice@example.org).",
		"    2 | if header :frob \"a\" \"b\" { keep; }",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diagnostics lack %q:\n%s", want, out)
		}
	}
}

func TestSieveInlineAndVacation(t *testing.T) {
	src := strings.Replace(base, `quota         = "10GiB"`, `quota         = "10GiB"
  sieve = <<EOT
require "fileinto";
fileinto "Lists";
EOT
}
user "bob@example.org" {
  password_hash = "`+hash+`"
  vacation {
    subject = "Away \"now\""
    body    = "Back on Monday.\nUrgent: call."
    until   = "2026-08-31"
    days    = 3
  }`, 1)
	cfg, out := loadDir(t, map[string]string{"mail.hcl": src})
	if cfg == nil || out != "" {
		t.Fatalf("load: %s", out)
	}
	if got := cfg.Users[0].Sieve; got != "require \"fileinto\";\nfileinto \"Lists\";\n" {
		t.Errorf("alice's script = %q", got)
	}
	s, err := sieve.Compile("bob", cfg.Users[1].Sieve)
	if err != nil {
		t.Fatalf("vacation script %q: %v", cfg.Users[1].Sieve, err)
	}
	m := sieve.ParseMessage([]byte("Subject: hi\r\n\r\n"))
	for _, c := range []struct {
		now  time.Time
		want bool
	}{{time.Date(2026, 8, 31, 23, 0, 0, 0, time.UTC), true}, {time.Date(2026, 9, 1, 0, 0, 1, 0, time.UTC), false}} {
		res, err := s.Run(context.Background(), m, sieve.Envelope{}, sieve.RunOptions{Now: c.now})
		if err != nil {
			t.Fatal(err)
		}
		var v *sieve.Vacation
		for _, a := range res.Actions {
			if x, ok := a.(sieve.Vacation); ok {
				v = &x
			}
		}
		if (v != nil) != c.want {
			t.Fatalf("at %v: vacation = %v, want %v", c.now, v, c.want)
		}
		if v != nil && (v.Subject != `Away "now"` || v.Reason != "Back on Monday.\nUrgent: call." || v.Days != 3) {
			t.Errorf("vacation = %+v", v)
		}
	}
}

func TestSieveInlineErrorPosition(t *testing.T) {
	src := strings.Replace(base, `quota         = "10GiB"`, `quota         = "10GiB"
  sieve = <<EOT
keep;
frob;
EOT`, 1)
	_, out := loadDir(t, map[string]string{"mail.hcl": src})
	// base's user block starts on line 20; the heredoc opens on line 24.
	lines := strings.Split(src, "\n")
	want := 0
	for i, l := range lines {
		if l == "frob;" {
			want = i + 1
		}
	}
	if !strings.Contains(out, "mail.hcl:"+strconv.Itoa(want)+":1: Error: Invalid Sieve script: unknown command \"frob\"") {
		t.Errorf("want the error on mail.hcl line %d:\n%s", want, out)
	}
}

func TestVacationAndSieveConflict(t *testing.T) {
	src := strings.Replace(base, `quota         = "10GiB"`, `quota         = "10GiB"
  sieve = "keep;"
  vacation { body = "away" }`, 1)
	_, out := loadDir(t, map[string]string{"mail.hcl": src})
	if !strings.Contains(out, "Both sieve and vacation") {
		t.Errorf("no conflict error:\n%s", out)
	}
}

func TestVacationFromMustBeOwn(t *testing.T) {
	src := strings.Replace(base, `quota         = "10GiB"`, `quota         = "10GiB"
  vacation {
    body = "away"
    from = "boss@example.org"
  }`, 1)
	_, out := loadDir(t, map[string]string{"mail.hcl": src})
	if !strings.Contains(out, `Invalid vacation sender: from "boss@example.org" is neither alice@example.org nor one of its aliases`) {
		t.Errorf("no error for a foreign from:\n%s", out)
	}
	src = strings.Replace(src, "boss@example.org", "contact@example.org", 1)
	if cfg, out := loadDir(t, map[string]string{"mail.hcl": src}); cfg == nil || out != "" {
		t.Errorf("an alias as from: %s", out)
	}
}
