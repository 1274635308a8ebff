package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/mailctl/mailctl/plan/config"
)

// varFlags collects repeated -var NAME=VALUE flags.
type varFlags map[string]string

func (v varFlags) String() string { return "" }

func (v varFlags) Set(s string) error {
	name, val, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("-var wants NAME=VALUE, got %q", s)
	}
	v[name] = val
	return nil
}

// addVarFlag registers -var on fs.
func addVarFlag(fs *flag.FlagSet) varFlags {
	v := varFlags{}
	fs.Var(v, "var", "set a variable: `NAME=VALUE` (repeatable; also MAILCTL_VAR_NAME)")
	return v
}

// loadConfig loads the configuration of e.Dir and prints its diagnostics;
// it returns nil when there were errors.
func loadConfig(e *env, vars varFlags) *config.Config {
	cfg, diags := config.Load(e.Dir, config.LoadOptions{Vars: vars, Getenv: e.Getenv})
	if len(diags) > 0 {
		var files = cfg.FilesOrNil()
		config.WriteDiagnostics(e.Stderr, files, diags, e.ColorErr)
	}
	if diags.HasErrors() {
		return nil
	}
	return cfg
}

func countErrors(diags interface{ Errs() []error }) int { return len(diags.Errs()) }
