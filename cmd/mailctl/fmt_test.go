package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclwrite"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/")

// testEnv returns an env with buffers for streams, no color, no terminal and
// an empty environment.
func testEnv(dir string) (*env, *bytes.Buffer, *bytes.Buffer) {
	var stdout, stderr bytes.Buffer
	return &env{
		Stdin:  strings.NewReader(""),
		Stdout: &stdout,
		Stderr: &stderr,
		Dir:    dir,
		Getenv: func(string) string { return "" },
	}, &stdout, &stderr
}

// runCLI runs mailctl with args in e and returns the exit code.
func runCLI(t *testing.T, e *env, args ...string) int {
	t.Helper()
	return run(context.Background(), args, e)
}

// golden compares got with the file testdata/<path>, or rewrites it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	path = filepath.Join("testdata", path)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n%s", path, unifiedDiff(path, want, got))
	}
}

// stripDir removes the temporary directory dir from file names in s.
func stripDir(s, dir string) []byte {
	return []byte(strings.ReplaceAll(s, dir+string(filepath.Separator), ""))
}

// writeFile writes a test file and fails the test on error.
func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFmtGolden formats every testdata/fmt/<case>/input.hcl in place with
// -diff and compares the file, the output and the exit code with the golden
// files of the case. A second run must then find nothing to change.
func TestFmtGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/fmt/*/input.hcl")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no test cases: %v", err)
	}
	for _, in := range cases {
		name := filepath.Base(filepath.Dir(in))
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			src := readFile(t, in)
			writeFile(t, filepath.Join(dir, "mail.hcl"), src, 0o644)

			e, stdout, stderr := testEnv(dir)
			code := runCLI(t, e, "fmt", "-diff")
			out := readFile(t, filepath.Join(dir, "mail.hcl"))

			c := filepath.Join("fmt", name)
			golden(t, filepath.Join(c, "exitcode.golden"), []byte(strconv.Itoa(code)+"\n"))
			golden(t, filepath.Join(c, "stdout.golden"), stripDir(stdout.String(), dir))
			golden(t, filepath.Join(c, "stderr.golden"), stripDir(stderr.String(), dir))
			golden(t, filepath.Join(c, "output.hcl"), []byte(out))
			if code != exitOK {
				if out != src {
					t.Errorf("fmt exited %d but changed the file", code)
				}
				return
			}

			// Idempotent: the output is already canonical.
			if f := string(hclwrite.Format([]byte(out))); f != out {
				t.Errorf("Format(output) changes it again:\n%s", unifiedDiff("output", []byte(out), []byte(f)))
			}
			e, stdout, stderr = testEnv(dir)
			if code := runCLI(t, e, "fmt", "-check"); code != exitOK {
				t.Errorf("fmt -check after fmt = %d, want 0 (stdout %q, stderr %q)", code, stdout, stderr)
			}
			// Comments are kept, word for word.
			for _, line := range strings.Split(src, "\n") {
				for _, marker := range []string{"#", "//", "/*"} {
					if i := strings.Index(line, marker); i >= 0 && !strings.Contains(line[:i], `"`) {
						if c := strings.TrimSpace(line[i:]); !strings.Contains(out, c) {
							t.Errorf("comment %q lost by fmt", c)
						}
					}
				}
			}
		})
	}
}

// TestFmtExitCodes checks the exit codes and side effects of each mode.
func TestFmtExitCodes(t *testing.T) {
	const ugly = "a=1\nbb = 2\n"
	const pretty = "a  = 1\nbb = 2\n"
	const broken = "a = \n"
	tests := []struct {
		name       string
		files      map[string]string // relative path -> content
		args       []string
		wantCode   int
		wantStdout string
		wantFiles  map[string]string // content after the run
		wantStderr string            // substring
	}{
		{name: "formatted", files: map[string]string{"mail.hcl": pretty}, args: []string{"-check"},
			wantCode: 0, wantFiles: map[string]string{"mail.hcl": pretty}},
		{name: "check finds unformatted", files: map[string]string{"mail.hcl": ugly, "ok.hcl": pretty}, args: []string{"-check"},
			wantCode: 3, wantStdout: "mail.hcl\n", wantFiles: map[string]string{"mail.hcl": ugly}},
		{name: "write", files: map[string]string{"mail.hcl": ugly}, args: nil,
			wantCode: 0, wantStdout: "mail.hcl\n", wantFiles: map[string]string{"mail.hcl": pretty}},
		{name: "write=false lists only", files: map[string]string{"mail.hcl": ugly}, args: []string{"-write=false"},
			wantCode: 0, wantStdout: "mail.hcl\n", wantFiles: map[string]string{"mail.hcl": ugly}},
		{name: "write=false list=false prints the result", files: map[string]string{"mail.hcl": ugly}, args: []string{"-write=false", "-list=false"},
			wantCode: 0, wantStdout: pretty, wantFiles: map[string]string{"mail.hcl": ugly}},
		{name: "broken file is not written", files: map[string]string{"a.hcl": ugly, "b.hcl": broken}, args: nil,
			wantCode: 1, wantStdout: "a.hcl\n", wantFiles: map[string]string{"a.hcl": pretty, "b.hcl": broken},
			wantStderr: "b.hcl:1:5: Error: Invalid expression"},
		{name: "broken with check is an error, not 3", files: map[string]string{"b.hcl": broken}, args: []string{"-check"},
			wantCode: 1, wantFiles: map[string]string{"b.hcl": broken}, wantStderr: "b.hcl:1:5:"},
		{name: "other extensions ignored", files: map[string]string{"notes.txt": ugly, "mail.hcl": pretty}, args: []string{"-check"},
			wantCode: 0, wantFiles: map[string]string{"notes.txt": ugly}},
		{name: "explicit file of any name", files: map[string]string{"notes.txt": ugly}, args: []string{"notes.txt"},
			wantCode: 0, wantStdout: "notes.txt\n", wantFiles: map[string]string{"notes.txt": pretty}},
		{name: "subdirectories skipped", files: map[string]string{"sub/x.hcl": ugly}, args: []string{"-check"},
			wantCode: 0, wantFiles: map[string]string{"sub/x.hcl": ugly}},
		{name: "recursive", files: map[string]string{"sub/x.hcl": ugly, ".hidden/y.hcl": ugly}, args: []string{"-recursive"},
			wantCode: 0, wantStdout: filepath.Join("sub", "x.hcl") + "\n",
			wantFiles: map[string]string{"sub/x.hcl": pretty, ".hidden/y.hcl": ugly}},
		{name: "stdin mixed with files", files: map[string]string{"mail.hcl": ugly}, args: []string{"-", "mail.hcl"},
			wantCode: 1, wantStderr: "standard input (-) cannot be mixed with files", wantFiles: map[string]string{"mail.hcl": ugly}},
		{name: "missing file", args: []string{"nope.hcl"}, wantCode: 1, wantStderr: "no such file"},
		{name: "bad flag", args: []string{"-nope"}, wantCode: 1, wantStderr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for p, c := range tt.files {
				p = filepath.Join(dir, p)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, p, c, 0o644)
			}
			e, stdout, stderr := testEnv(dir)
			code := runCLI(t, e, append([]string{"fmt"}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			if got := string(stripDir(stdout.String(), dir)); got != tt.wantStdout {
				t.Errorf("stdout = %q, want %q", got, tt.wantStdout)
			}
			if !strings.Contains(string(stripDir(stderr.String(), dir)), tt.wantStderr) || tt.wantStderr == "" && stderr.Len() > 0 {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.wantStderr)
			}
			for p, want := range tt.wantFiles {
				if got := readFile(t, filepath.Join(dir, p)); got != want {
					t.Errorf("%s = %q, want %q", p, got, want)
				}
			}
		})
	}
}

// TestFmtKeepsModeAndLeavesNoTempFile checks the atomic write.
func TestFmtKeepsModeAndLeavesNoTempFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "secret.hcl")
	writeFile(t, p, "a=1\n", 0o600)
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	e, _, stderr := testEnv(dir)
	if code := runCLI(t, e, "fmt"); code != 0 {
		t.Fatalf("fmt = %d: %s", code, stderr)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode after fmt = %v, want 0600", st.Mode().Perm())
	}
	if got := readFile(t, p); got != "a = 1\n" {
		t.Errorf("content = %q", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after fmt, want 1 (a temp file left?)", len(entries))
	}
}

// TestFmtStdin formats standard input to standard output.
func TestFmtStdin(t *testing.T) {
	e, stdout, stderr := testEnv(t.TempDir())
	e.Stdin = strings.NewReader("x=1\nyy=2\n")
	if code := runCLI(t, e, "fmt", "-"); code != 0 {
		t.Fatalf("fmt - = %d: %s", code, stderr)
	}
	if got, want := stdout.String(), "x  = 1\nyy = 2\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
}

// TestUnifiedDiff applies the diff of random line edits with a small patch
// routine and checks that it yields the new text.
func TestUnifiedDiff(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"a\n", "b\n", "c\n", "d\n", "e\n"}
	for i := 0; i < 500; i++ {
		a := randomLines(r, words)
		b := mutate(r, a, words)
		if r.IntN(10) == 0 && len(b) > 0 {
			b[len(b)-1] = strings.TrimSuffix(b[len(b)-1], "\n")
		}
		as, bs := strings.Join(a, ""), strings.Join(b, "")
		d := unifiedDiff("f", []byte(as), []byte(bs))
		if as == bs {
			if d != nil {
				t.Fatalf("diff of equal texts = %q, want nil", d)
			}
			continue
		}
		got, err := applyDiff(as, string(d))
		if err != nil {
			t.Fatalf("apply diff %q -> %q:\n%s\n%v", as, bs, d, err)
		}
		if got != bs {
			t.Fatalf("patch(%q, diff) = %q, want %q\n%s", as, got, bs, d)
		}
	}
}

func TestUnifiedDiffExample(t *testing.T) {
	a := "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n"
	b := "1\n2\n3\nfour\n5\n6\n7\n8\n9\n10\n11\n12\n13\n"
	want := `--- old/f
+++ new/f
@@ -1,7 +1,7 @@
 1
 2
 3
-4
+four
 5
 6
 7
@@ -10,3 +10,4 @@
 10
 11
 12
+13
`
	if got := string(unifiedDiff("f", []byte(a), []byte(b))); got != want {
		t.Errorf("unifiedDiff = \n%s\nwant\n%s", got, want)
	}
}

func randomLines(r *rand.Rand, words []string) []string {
	n := r.IntN(15)
	out := make([]string, n)
	for i := range out {
		out[i] = words[r.IntN(len(words))]
	}
	return out
}

func mutate(r *rand.Rand, a, words []string) []string {
	b := append([]string(nil), a...)
	for k := r.IntN(4); k > 0; k-- {
		i := r.IntN(len(b) + 1)
		switch r.IntN(3) {
		case 0:
			b = append(b[:i], append([]string{words[r.IntN(len(words))]}, b[i:]...)...)
		case 1:
			if i < len(b) {
				b = append(b[:i], b[i+1:]...)
			}
		case 2:
			if i < len(b) {
				b[i] = "x\n"
			}
		}
	}
	return b
}

// applyDiff applies a unified diff to a, checking every context and removed
// line and every hunk header.
func applyDiff(a, diff string) (string, error) {
	src := splitLines([]byte(a))
	lines := strings.SplitAfter(diff, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "--- ") || !strings.HasPrefix(lines[1], "+++ ") {
		return "", fmt.Errorf("bad headers")
	}
	var out []string
	pos := 0 // next unconsumed line of src
	for i := 2; i < len(lines) && lines[i] != ""; {
		var as, al, bs, bl int
		h := lines[i]
		f := strings.Fields(h)
		if len(f) != 4 || f[0] != "@@" || f[3] != "@@" || f[1][0] != '-' || f[2][0] != '+' {
			return "", fmt.Errorf("bad hunk header %q", h)
		}
		as, al = parseRange(f[1][1:])
		bs, bl = parseRange(f[2][1:])
		start := as - 1
		if al == 0 {
			start = as
		}
		if start < pos {
			return "", fmt.Errorf("hunk %q overlaps", h)
		}
		out = append(out, src[pos:start]...)
		pos = start
		gotA, gotB := 0, 0
		wantB := bs - 1
		if bl == 0 {
			wantB = bs
		}
		if len(out) != wantB {
			return "", fmt.Errorf("hunk %q: new start %d, but %d lines written", h, wantB, len(out))
		}
		i++
		for i < len(lines) && lines[i] != "" && !strings.HasPrefix(lines[i], "@@") {
			l := lines[i]
			text := l[1:]
			if i+1 < len(lines) && strings.HasPrefix(lines[i+1], `\ No newline`) {
				text = strings.TrimSuffix(text, "\n")
				i++
			}
			switch l[0] {
			case ' ', '-':
				if pos >= len(src) || src[pos] != text {
					return "", fmt.Errorf("hunk %q: line %d is not %q", h, pos+1, text)
				}
				pos++
				gotA++
				if l[0] == ' ' {
					out = append(out, text)
					gotB++
				}
			case '+':
				out = append(out, text)
				gotB++
			default:
				return "", fmt.Errorf("bad line %q", l)
			}
			i++
		}
		if gotA != al || gotB != bl {
			return "", fmt.Errorf("hunk %q: counted -%d +%d", h, gotA, gotB)
		}
	}
	out = append(out, src[pos:]...)
	return strings.Join(out, ""), nil
}

func parseRange(s string) (start, n int) {
	n = 1
	if a, b, ok := strings.Cut(s, ","); ok {
		s = a
		n, _ = strconv.Atoi(b)
	}
	start, _ = strconv.Atoi(s)
	return start, n
}
