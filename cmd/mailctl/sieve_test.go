package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateSieve: validate reports every error of a user's Sieve script
// at the script's file:line:col, with its line, like HCL errors.
func TestValidateSieve(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := labConfig + `user "alice@example.org" {
  password_hash = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$5yq2Vt0Jc6QFd6nOgxwtWkl3e1gGugcqo8xiP0WDJwQ"
  sieve         = file("sieve/alice.sieve")
}
`
	writeFile(t, filepath.Join(dir, "mail.hcl"), conf, 0o644)
	if err := os.MkdirAll(filepath.Join(dir, "sieve"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "sieve", "alice.sieve"),
		"require \"fileinto\";\nif header :contians \"subject\" \"x\" { fileinto \"X\"; }\nvacation \"away\";\n", 0o644)
	e, out, errb := testEnv(dir)
	if code := runCLI(t, e, "validate"); code == 0 {
		t.Fatalf("validate = 0 with a broken script\n%s%s", out, errb)
	}
	for _, want := range []string{
		"sieve/alice.sieve:2:11: Error: Invalid Sieve script: header: unknown tag :contians (user alice@example.org).",
		"    2 | if header :contians \"subject\" \"x\" { fileinto \"X\"; }",
		"sieve/alice.sieve:3:1: Error: Invalid Sieve script: vacation needs require \"vacation\" (user alice@example.org).",
	} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("validate output lacks %q:\n%s", want, errb)
		}
	}
	// Fixed, it validates.
	writeFile(t, filepath.Join(dir, "sieve", "alice.sieve"),
		"require [\"fileinto\", \"vacation\"];\nif header :contains \"subject\" \"x\" { fileinto \"X\"; }\nvacation \"away\";\n", 0o644)
	e, out, errb = testEnv(dir)
	if code := runCLI(t, e, "validate"); code != 0 || !strings.Contains(out.String(), "Success!") {
		t.Errorf("validate of the fixed script = %d\n%s%s", code, out, errb)
	}
}
