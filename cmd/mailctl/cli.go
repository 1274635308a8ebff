package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

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
	// Color is false with -no-color or NO_COLOR.
	Color bool
	// Getenv reads the environment; tests replace it.
	Getenv func(string) string
	// IsTerminal reports whether stdin is an interactive terminal.
	IsTerminal bool
}

func newEnv() *env {
	return &env{
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		Dir:        ".",
		Color:      term.IsTerminal(int(os.Stderr.Fd())),
		Getenv:     os.Getenv,
		IsTerminal: term.IsTerminal(int(os.Stdin.Fd())),
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
		e.Color = false
	}
	fs := flag.NewFlagSet("mailctl", flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	fs.StringVar(&e.Dir, "chdir", e.Dir, "read the configuration from `DIR`")
	noColor := fs.Bool("no-color", false, "disable colored output (also NO_COLOR)")
	fs.Usage = func() { usage(e.Stderr) }
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	if *noColor {
		e.Color = false
	}
	rest := fs.Args()
	if len(rest) == 0 {
		usage(e.Stderr)
		return exitUsage
	}
	name := rest[0]
	if name == "help" || name == "-h" || name == "--help" {
		usage(e.Stdout)
		return exitOK
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(e.Stderr, "Error: unknown command %q; run 'mailctl help' for the list\n", name)
		return exitUsage
	}
	return c.run(ctx, e, rest[1:])
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
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Global options: -chdir DIR (configuration directory, default .), -no-color.")
}

// newFlagSet returns a flag set for a command whose usage lists its flags.
func newFlagSet(e *env, name, argsHelp string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	fs.BoolFunc("no-color", "disable colored output (also NO_COLOR)", func(string) error {
		e.Color = false
		return nil
	})
	fs.Usage = func() {
		fmt.Fprintf(e.Stderr, "Usage: mailctl %s %s\n", name, strings.TrimSpace(argsHelp))
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and returns (done, code): done is true when the
// command must stop (help or error) with code.
func parseFlags(fs *flag.FlagSet, args []string) (bool, int) {
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
