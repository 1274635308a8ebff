package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"golang.org/x/term"
)

// env is what a command may touch of the outside world. Tests build one with
// buffers instead of the process's streams.
type env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Dir is the configuration directory (-chdir).
	Dir string
	// Color enables ANSI colours on Stdout, ColorErr on Stderr: each only
	// when that stream is a terminal, and neither with -no-color or
	// NO_COLOR (so `mailctl plan > file` writes no escape codes).
	Color    bool
	ColorErr bool
	// Getenv reads the environment; tests replace it.
	Getenv func(string) string
	// IsTerminal reports whether stdin is an interactive terminal.
	IsTerminal bool
}

func newEnv() *env { return newEnvFiles(os.Stdin, os.Stdout, os.Stderr) }

// newEnvFiles is the env of a process whose streams are these files: each
// stream gets colours only when it is a terminal.
func newEnvFiles(stdin, stdout, stderr *os.File) *env {
	return &env{
		Stdin:      stdin,
		Stdout:     stdout,
		Stderr:     stderr,
		Dir:        ".",
		Color:      term.IsTerminal(int(stdout.Fd())),
		ColorErr:   term.IsTerminal(int(stderr.Fd())),
		Getenv:     os.Getenv,
		IsTerminal: term.IsTerminal(int(stdin.Fd())),
	}
}

// Exit codes shared by the commands.
const (
	exitOK    = 0
	exitError = 1
	// exitUsage is also 1 (flag errors are errors), kept apart for readability.
	exitUsage = 1
)

// command is one subcommand. Each lives in its own file and registers itself
// from init, so that adding a command touches no shared file.
type command struct {
	name     string
	synopsis string
	// run receives the arguments after the command name.
	run func(ctx context.Context, e *env, args []string) int
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("mailctl: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// run parses the global flags and dispatches to a command.
func run(ctx context.Context, args []string, e *env) int {
	if e.Getenv("NO_COLOR") != "" {
		e.Color, e.ColorErr = false, false
	}
	fs := flag.NewFlagSet("mailctl", flag.ContinueOnError)
	out := &flagOutput{e: e}
	fs.SetOutput(out)
	fs.StringVar(&e.Dir, "chdir", e.Dir, "read the configuration from `DIR`")
	noColor := fs.Bool("no-color", false, "disable colored output (also NO_COLOR)")
	showVersion := fs.Bool("version", false, "print the version and exit (also --version)")
	fs.Usage = func() { usage(out.writer()) }
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	if *noColor {
		e.Color, e.ColorErr = false, false
	}
	if *showVersion {
		return commands["version"].run(ctx, e, nil)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		usage(e.Stderr)
		return exitUsage
	}
	name := rest[0]
	if name == "help" {
		if len(rest) == 1 {
			usage(e.Stdout)
			return exitOK
		}
		c, code := lookupCommand(e, rest[1])
		if c == nil {
			return code
		}
		return c.run(ctx, e, []string{"-h"})
	}
	c, code := lookupCommand(e, name)
	if c == nil {
		return code
	}
	return c.run(ctx, e, rest[1:])
}

// lookupCommand returns the command called name, or prints an error (with
// the closest command name) and returns its exit code.
func lookupCommand(e *env, name string) (*command, int) {
	if c, ok := commands[name]; ok {
		return c, exitOK
	}
	return nil, errorf(e, "unknown command %q.%s Run 'mailctl help' for the list.", name, didYouMean(name, commandNames()))
}

func commandNames() []string {
	names := make([]string, 0, len(commands)+1)
	for n := range commands {
		names = append(names, n)
	}
	names = append(names, "help")
	sort.Strings(names)
	return names
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: mailctl [-chdir DIR] [-no-color] COMMAND [options]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].synopsis)
	}
	fmt.Fprintf(w, "  %-10s %s\n", "help", "show the options of a command: mailctl help COMMAND")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Global options: -chdir DIR (configuration directory, default .), -no-color, -version.")
}

// flagOutput routes what the flag package prints: an error message, and
// the usage that follows it, go to stderr; the usage asked for with -h or
// -help goes to stdout (and the command exits 0).
type flagOutput struct {
	e      *env
	failed bool
}

// Write is only called by the flag package for an error message (usages
// are printed to writer()).
func (o *flagOutput) Write(p []byte) (int, error) {
	o.failed = true
	return o.e.Stderr.Write(p)
}

// writer is where a usage goes: stderr after an error, else stdout.
func (o *flagOutput) writer() io.Writer {
	if o.failed {
		return o.e.Stderr
	}
	return o.e.Stdout
}

// usageFooters holds the text a command prints after its flags in its
// usage (setUsageFooter).
var usageFooters sync.Map // *flag.FlagSet -> func(io.Writer)

// setUsageFooter makes the usage of fs end with what footer prints.
func setUsageFooter(fs *flag.FlagSet, footer func(io.Writer)) { usageFooters.Store(fs, footer) }

// newFlagSet returns a flag set for a command whose usage lists its flags.
func newFlagSet(e *env, name, argsHelp string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	out := &flagOutput{e: e}
	fs.SetOutput(out)
	fs.BoolFunc("no-color", "disable colored output (also NO_COLOR)", func(string) error {
		e.Color, e.ColorErr = false, false
		return nil
	})
	fs.Usage = func() {
		w := out.writer()
		fmt.Fprintf(w, "Usage: mailctl %s %s\n", name, strings.TrimSpace(argsHelp))
		if c := commands[name]; c != nil && c.synopsis != "" {
			fmt.Fprintf(w, "\n%s%s.\n\nOptions:\n", strings.ToUpper(c.synopsis[:1]), c.synopsis[1:])
		}
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(out)
		if f, ok := usageFooters.Load(fs); ok {
			fmt.Fprintln(w)
			f.(func(io.Writer))(w)
		}
	}
	return fs
}

// parseFlags parses args and returns (done, code): done is true when the
// command must stop (help or error) with code.
func parseFlags(fs *flag.FlagSet, args []string) (bool, int) {
	defer usageFooters.Delete(fs)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return true, exitOK
		}
		return true, exitUsage
	}
	return false, 0
}

// errorf prints one error line.
func errorf(e *env, format string, a ...any) int {
	fmt.Fprintf(e.Stderr, "Error: "+format+"\n", a...)
	return exitError
}
