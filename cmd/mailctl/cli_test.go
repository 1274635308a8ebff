package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelpVersionAndTypos checks the Unix conventions: help asked for goes
// to stdout with exit 0, a usage error goes to stderr with exit 1, and a
// mistyped command gets a suggestion.
func TestHelpVersionAndTypos(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args       []string
		code       int
		stdout     []string // substrings
		stderr     []string
		quietOut   bool // nothing on stdout
		quietError bool // nothing on stderr
	}{
		{args: []string{"-h"}, stdout: []string{"Usage: mailctl", "validate", "completion"}, quietError: true},
		{args: []string{"--help"}, stdout: []string{"Usage: mailctl"}, quietError: true},
		{args: []string{"help"}, stdout: []string{"Usage: mailctl", "help COMMAND"}, quietError: true},
		{args: []string{"-version"}, stdout: []string{"mailctl dev"}, quietError: true},
		{args: []string{"--version"}, stdout: []string{"mailctl dev"}, quietError: true},
		{args: []string{"version"}, stdout: []string{"mailctl dev"}, quietError: true},
		{args: []string{"plan", "-h"}, stdout: []string{"Usage: mailctl plan", "-target ADDR", "-detailed-exitcode"}, quietError: true},
		{args: []string{"plan", "--help"}, stdout: []string{"Usage: mailctl plan"}, quietError: true},
		{args: []string{"help", "plan"}, stdout: []string{"Usage: mailctl plan", "-target ADDR"}, quietError: true},
		{args: []string{"help", "preflight"}, stdout: []string{"outbound25"}, quietError: true},
		{args: []string{"plan", "-bogus"}, code: 1, stderr: []string{"flag provided but not defined: -bogus", "Usage: mailctl plan"}, quietOut: true},
		{args: []string{"paln"}, code: 1, stderr: []string{`unknown command "paln". Did you mean "plan"?`}, quietOut: true},
		{args: []string{"help", "vrify"}, code: 1, stderr: []string{`Did you mean "verify"?`}, quietOut: true},
		{args: []string{"frobnicate"}, code: 1, stderr: []string{`unknown command "frobnicate". Run 'mailctl help'`}, quietOut: true},
		{args: []string{}, code: 1, stderr: []string{"Usage: mailctl"}, quietOut: true},
	}
	for _, tc := range tests {
		e, out, errb := testEnv(t.TempDir())
		code := runCLI(t, e, tc.args...)
		name := strings.Join(tc.args, " ")
		if code != tc.code {
			t.Errorf("mailctl %s: exit %d, want %d\nstdout: %s\nstderr: %s", name, code, tc.code, out, errb)
		}
		for _, s := range tc.stdout {
			if !strings.Contains(out.String(), s) {
				t.Errorf("mailctl %s: stdout lacks %q:\n%s", name, s, out)
			}
		}
		for _, s := range tc.stderr {
			if !strings.Contains(errb.String(), s) {
				t.Errorf("mailctl %s: stderr lacks %q:\n%s", name, s, errb)
			}
		}
		if tc.quietOut && out.Len() > 0 {
			t.Errorf("mailctl %s: unexpected stdout:\n%s", name, out)
		}
		if tc.quietError && errb.Len() > 0 {
			t.Errorf("mailctl %s: unexpected stderr:\n%s", name, errb)
		}
	}
}

// TestCompletionBash loads the bash script in a real bash and completes
// command names, a command's options (read from `mailctl help CMD`, here
// a shell function printing what this build prints) and shells.
func TestCompletionBash(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	e, script, _ := testEnv(t.TempDir())
	if code := runCLI(t, e, "completion", "bash"); code != 0 {
		t.Fatalf("completion bash = %d", code)
	}
	e, planHelp, _ := testEnv(t.TempDir())
	if code := runCLI(t, e, "help", "plan"); code != 0 {
		t.Fatalf("help plan = %d", code)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "completion.bash"), script.String(), 0o644)
	writeFile(t, filepath.Join(dir, "plan-help.txt"), planHelp.String(), 0o644)
	complete := func(words ...string) string {
		t.Helper()
		sh := `mailctl() { [[ "$1 $2" == "help plan" ]] && cat plan-help.txt; }
source ./completion.bash
COMP_WORDS=(` + strings.Join(words, " ") + `)
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_mailctl
echo "${COMPREPLY[*]}"`
		cmd := exec.Command("bash", "--norc", "-c", sh)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := complete("mailctl", "pl"); got != "plan" {
		t.Errorf("mailctl pl<TAB> = %q, want plan", got)
	}
	if got := complete("mailctl", "-chdir", "x", "va"); got != "validate" {
		t.Errorf("mailctl -chdir x va<TAB> = %q, want validate", got)
	}
	if got := complete("mailctl", "plan", "-det"); got != "-detailed-exitcode" {
		t.Errorf("mailctl plan -det<TAB> = %q, want -detailed-exitcode", got)
	}
	if got := complete("mailctl", "completion", "z"); got != "zsh" {
		t.Errorf("mailctl completion z<TAB> = %q, want zsh", got)
	}
	for _, sh := range []string{"zsh", "fish"} {
		e, out, _ := testEnv(t.TempDir())
		if code := runCLI(t, e, "completion", sh); code != 0 || !strings.Contains(out.String(), "'plan:show what apply would change") && !strings.Contains(out.String(), "-a plan -d") {
			t.Errorf("completion %s = %d:\n%s", sh, code, out)
		}
		if path, err := exec.LookPath(sh); err == nil {
			f := filepath.Join(dir, "c."+sh)
			writeFile(t, f, out.String(), 0o644)
			if b, err := exec.Command(path, "-n", f).CombinedOutput(); err != nil {
				t.Errorf("%s -n: %v\n%s", sh, err, b)
			}
		}
	}
	e, _, errb := testEnv(t.TempDir())
	if code := runCLI(t, e, "completion", "bsh"); code != 1 || !strings.Contains(errb.String(), `Did you mean "bash"?`) {
		t.Errorf("completion bsh = %d, %q", code, errb)
	}
}

// TestColourOnlyOnTerminal runs plan with stderr on a pseudo-terminal and
// stdout on a file, as `mailctl plan > file` from a terminal does: the
// file gets no escape codes. With stdout on the terminal, the plan is
// coloured.
func TestColourOnlyOnTerminal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), labConfig, 0o644)
	master, slave := openPTY(t)
	go func() { // drain the terminal
		buf := make([]byte, 4096)
		for {
			if _, err := master.Read(buf); err != nil {
				return
			}
		}
	}()
	file, err := os.Create(filepath.Join(t.TempDir(), "plan.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	e := newEnvFiles(os.Stdin, file, slave)
	e.Dir, e.Getenv = dir, func(string) string { return "" }
	if !e.ColorErr || e.Color {
		t.Fatalf("stderr on a terminal, stdout on a file: Color=%v ColorErr=%v, want false true", e.Color, e.ColorErr)
	}
	if code := runCLI(t, e, "plan", "-refresh=false"); code != 0 {
		t.Fatalf("plan = %d", code)
	}
	got := readFile(t, file.Name())
	if !strings.Contains(got, "to add") || strings.Contains(got, "\x1b[") {
		t.Errorf("plan > file wrote escape codes or no plan:\n%q", got)
	}

	// The same plan to the terminal is coloured.
	out, err := os.CreateTemp(t.TempDir(), "tty")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	e = newEnvFiles(os.Stdin, slave, out)
	e.Dir, e.Getenv = dir, func(string) string { return "" }
	if !e.Color || e.ColorErr {
		t.Fatalf("stdout on a terminal: Color=%v ColorErr=%v, want true false", e.Color, e.ColorErr)
	}
	e.Stdout = &ttyCapture{}
	if code := runCLI(t, e, "plan", "-refresh=false"); code != 0 {
		t.Fatalf("plan = %d", code)
	}
	if s := e.Stdout.(*ttyCapture).String(); !strings.Contains(s, "\x1b[") {
		t.Errorf("plan to a terminal is not coloured:\n%q", s)
	}
}

// ttyCapture stands in for the terminal's stream once the env has decided
// on colours from the real terminal.
type ttyCapture struct{ strings.Builder }
