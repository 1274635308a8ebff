package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/mailctl/mailctl/internal/atomicfile"
	"github.com/mailctl/mailctl/plan/config"
)

// exitFmtCheck is the exit code of `fmt -check` when a file is not in
// canonical format (as `terraform fmt -check` does with 3).
const exitFmtCheck = 3

func init() {
	register(&command{
		name:     "fmt",
		synopsis: "rewrite configuration files in the canonical HCL format",
		run:      runFmt,
	})
}

// fmtOptions are the flags of `mailctl fmt`.
type fmtOptions struct {
	list      bool
	write     bool
	diff      bool
	check     bool
	recursive bool
}

func runFmt(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "fmt", "[-check] [-diff] [-write=false] [-list=false] [-recursive] [FILE|DIR|-]...")
	var o fmtOptions
	fs.BoolVar(&o.list, "list", true, "print the names of files whose formatting differs")
	fs.BoolVar(&o.write, "write", true, "write the result to the source file instead of stdout")
	fs.BoolVar(&o.diff, "diff", false, "print a unified diff of the formatting changes")
	fs.BoolVar(&o.check, "check", false, "only check: exit 3 when a file is not formatted (implies -write=false)")
	fs.BoolVar(&o.recursive, "recursive", false, "also process the subdirectories")
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if o.check {
		o.write = false
	}
	targets := fs.Args()
	if len(targets) == 0 {
		targets = []string{"."}
	}

	f := &formatter{e: e, opts: o, files: map[string]*hcl.File{}}
	if slices.Contains(targets, "-") {
		if len(targets) > 1 {
			return errorf(e, "fmt: standard input (-) cannot be mixed with files")
		}
		f.stdin()
	} else {
		for _, t := range targets {
			if err := ctx.Err(); err != nil {
				return errorf(e, "fmt: %v", err)
			}
			f.target(t)
		}
	}
	switch {
	case f.failed:
		return exitError
	case o.check && f.changed > 0:
		return exitFmtCheck
	}
	return exitOK
}

// formatter formats files one by one and remembers what happened.
type formatter struct {
	e     *env
	opts  fmtOptions
	files map[string]*hcl.File // sources by name, for diagnostic snippets
	// changed counts the files whose formatting differs.
	changed int
	// failed is set when a file could not be read, parsed or written.
	failed bool
}

// resolve returns the path of a command-line name: relative names are
// relative to the -chdir directory. Files are shown under that path, as
// validate shows them.
func (f *formatter) resolve(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(f.e.Dir, name)
}

// target formats one command-line argument: a file (any name) or a
// directory (its *.hcl files, and with -recursive those of its
// subdirectories, hidden ones excepted).
func (f *formatter) target(name string) {
	path := f.resolve(name)
	st, err := os.Stat(path)
	if err != nil {
		f.fail("fmt: %v", err)
		return
	}
	if !st.IsDir() {
		f.file(path, path)
		return
	}
	files, err := fmtFindFiles(path, f.opts.recursive)
	if err != nil {
		f.fail("fmt: %v", err)
		return
	}
	for _, p := range files {
		f.file(p, p)
	}
}

// fmtFindFiles lists the *.hcl files of dir in lexical order.
func fmtFindFiles(dir string, recursive bool) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir && (!recursive || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), ".hcl") && (d.Type().IsRegular() || d.Type()&fs.ModeSymlink != 0) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list configuration files in %q: %w", dir, err)
	}
	sort.Strings(out)
	return out, nil
}

func (f *formatter) fail(format string, a ...any) {
	errorf(f.e, format, a...)
	f.failed = true
}

// stdin formats standard input to standard output.
func (f *formatter) stdin() {
	src, err := io.ReadAll(f.e.Stdin)
	if err != nil {
		f.fail("fmt: read standard input: %v", err)
		return
	}
	out, ok := f.format(src, "<stdin>")
	if !ok {
		return
	}
	if !bytes.Equal(src, out) {
		f.changed++
	}
	switch {
	case f.opts.diff:
		f.e.Stdout.Write(unifiedDiff("<stdin>", src, out))
	case !f.opts.check:
		f.e.Stdout.Write(out)
	}
}

// file formats the file at path; display is the name printed to the user.
func (f *formatter) file(path, display string) {
	src, err := os.ReadFile(path)
	if err != nil {
		f.fail("fmt: read %s: %v", display, unwrapPathError(err))
		return
	}
	out, ok := f.format(src, display)
	if !ok {
		return
	}
	if bytes.Equal(src, out) {
		if !f.opts.write && !f.opts.list && !f.opts.diff && !f.opts.check {
			f.e.Stdout.Write(out)
		}
		return
	}
	f.changed++
	if f.opts.list {
		fmt.Fprintln(f.e.Stdout, display)
	}
	if f.opts.diff {
		f.e.Stdout.Write(unifiedDiff(filepath.ToSlash(display), src, out))
	}
	if f.opts.write {
		if err := writeFileAtomic(path, out); err != nil {
			f.fail("fmt: write %s: %v", display, err)
		}
		return
	}
	if !f.opts.list && !f.opts.diff && !f.opts.check {
		f.e.Stdout.Write(out)
	}
}

// format parses src and returns its canonical form. A source that does not
// parse is never formatted (hclwrite.Format accepts broken input and can make
// it worse): its diagnostics are printed and ok is false.
func (f *formatter) format(src []byte, name string) (out []byte, ok bool) {
	// In pieces of top-level blocks (see config.FormatFile): one parse of a
	// configuration of thousands of domains took gigabytes.
	out, diags := config.FormatFile(src, name)
	f.files[name] = &hcl.File{Bytes: src}
	if diags.HasErrors() {
		config.WriteDiagnostics(f.e.Stderr, f.files, diags, f.e.ColorErr)
		f.failed = true
		return nil, false
	}
	// Like gofmt, end a non-empty file with a newline.
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	// A formatter bug must not destroy a configuration: check the result.
	if _, d := config.ParseFile(out, name); d.HasErrors() {
		f.fail("fmt: %s: the formatted text does not parse (%s); the file is left unchanged", name, d.Error())
		return nil, false
	}
	return out, true
}

// unwrapPathError drops the path of an *fs.PathError: the caller names the
// file already.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// writeFileAtomic replaces the file at path with data, keeping its mode
// (internal/atomicfile): a crash leaves either the old or the new content.
// A symbolic link is followed and its target replaced.
func writeFileAtomic(path string, data []byte) error {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	mode := fs.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	return unwrapPathError(atomicfile.WriteFile(path, data, mode))
}

// unifiedDiff returns a unified diff (3 lines of context) from a to b, with
// name in the headers, or nil when they are equal.
func unifiedDiff(name string, a, b []byte) []byte {
	if bytes.Equal(a, b) {
		return nil
	}
	x, y := splitLines(a), splitLines(b)
	ops := diffLines(x, y)

	const context = 3
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "--- old/%s\n+++ new/%s\n", name, name)
	// Walk the edit script and cut it into hunks around the changes.
	i := 0
	for i < len(ops) {
		// Find the next change.
		for i < len(ops) && ops[i].kind == ' ' {
			i++
		}
		if i == len(ops) {
			break
		}
		start := max(i-context, 0)
		// Extend the hunk while changes are within 2*context lines.
		end := i
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].kind == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*context {
				end = min(end+context, len(ops))
				break
			}
			end = run
		}
		hunk := ops[start:end]
		aStart, bStart := hunk[0].ai, hunk[0].bi
		var aLen, bLen int
		for _, op := range hunk {
			if op.kind != '+' {
				aLen++
			}
			if op.kind != '-' {
				bLen++
			}
		}
		fmt.Fprintf(&buf, "@@ -%s +%s @@\n", hunkRange(aStart, aLen), hunkRange(bStart, bLen))
		for _, op := range hunk {
			buf.WriteByte(op.kind)
			buf.WriteString(op.text)
			if !strings.HasSuffix(op.text, "\n") {
				buf.WriteString("\n\\ No newline at end of file\n")
			}
		}
		i = end
	}
	return buf.Bytes()
}

// hunkRange formats the start,length of a hunk header (1-based; an empty
// range names the line before it).
func hunkRange(start, n int) string {
	switch n {
	case 0:
		return fmt.Sprintf("%d,0", start)
	case 1:
		return fmt.Sprintf("%d", start+1)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}

// splitLines splits s after each newline; the last line may lack one.
func splitLines(s []byte) []string {
	if len(s) == 0 {
		return nil
	}
	lines := strings.SplitAfter(string(s), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// diffOp is one line of an edit script: kind is ' ', '-' or '+'; ai and bi
// are the 0-based line numbers in a and b where the op stands.
type diffOp struct {
	kind   byte
	text   string
	ai, bi int
}

// diffLines returns an edit script from x to y from their longest common
// subsequence. Configuration files are small; beyond maxCells the script is
// "delete everything, insert everything", still a correct diff.
func diffLines(x, y []string) []diffOp {
	const maxCells = 16 << 20
	n, m := len(x), len(y)
	// Common prefix and suffix need no table.
	pre := 0
	for pre < n && pre < m && x[pre] == y[pre] {
		pre++
	}
	suf := 0
	for suf < n-pre && suf < m-pre && x[n-1-suf] == y[m-1-suf] {
		suf++
	}
	var ops []diffOp
	for k := 0; k < pre; k++ {
		ops = append(ops, diffOp{' ', x[k], k, k})
	}
	xs, ys := x[pre:n-suf], y[pre:m-suf]
	if len(xs)*len(ys) > maxCells {
		for k, l := range xs {
			ops = append(ops, diffOp{'-', l, pre + k, pre})
		}
		for k, l := range ys {
			ops = append(ops, diffOp{'+', l, pre + len(xs), pre + k})
		}
	} else {
		// lcs[i][j] = length of the LCS of xs[i:] and ys[j:].
		w := len(ys) + 1
		lcs := make([]int, (len(xs)+1)*w)
		for i := len(xs) - 1; i >= 0; i-- {
			for j := len(ys) - 1; j >= 0; j-- {
				if xs[i] == ys[j] {
					lcs[i*w+j] = lcs[(i+1)*w+j+1] + 1
				} else {
					lcs[i*w+j] = max(lcs[(i+1)*w+j], lcs[i*w+j+1])
				}
			}
		}
		i, j := 0, 0
		for i < len(xs) || j < len(ys) {
			switch {
			case i < len(xs) && j < len(ys) && xs[i] == ys[j]:
				ops = append(ops, diffOp{' ', xs[i], pre + i, pre + j})
				i++
				j++
			case j < len(ys) && (i == len(xs) || lcs[i*w+j+1] > lcs[(i+1)*w+j]):
				ops = append(ops, diffOp{'+', ys[j], pre + i, pre + j})
				j++
			default:
				ops = append(ops, diffOp{'-', xs[i], pre + i, pre + j})
				i++
			}
		}
	}
	for k := 0; k < suf; k++ {
		ops = append(ops, diffOp{' ', x[n-suf+k], n - suf + k, m - suf + k})
	}
	return ops
}
