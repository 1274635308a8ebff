package main

import (
	"context"
	"fmt"

	"github.com/mailctl/mailctl/plan/config"
)

func init() {
	register(&command{
		name:     "validate",
		synopsis: "check the configuration without touching the network",
		run:      runValidate,
	})
}

func runValidate(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "validate", "[-json] [-var NAME=VALUE]...")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	vars := addVarFlag(fs)
	if done, code := parseFlags(fs, args); done {
		return code
	}
	// Like terraform validate, no secret is needed: an unset env() is fine.
	cfg, diags := config.Load(e.Dir, config.LoadOptions{Vars: vars, Getenv: e.Getenv, NoSecrets: true})
	if *asJSON {
		if err := config.WriteDiagnosticsJSON(e.Stdout, cfg.FilesOrNil(), diags); err != nil {
			return errorf(e, "write result: %v", err)
		}
	} else if len(diags) > 0 {
		config.WriteDiagnostics(e.Stderr, cfg.FilesOrNil(), diags, e.ColorErr)
	}
	if diags.HasErrors() {
		if !*asJSON {
			fmt.Fprintf(e.Stderr, "%d problem(s) found.\n", countErrors(diags))
		}
		return exitError
	}
	if !*asJSON {
		fmt.Fprintf(e.Stdout, "Success! The configuration is valid: %d domain(s), %d server(s), %d user(s), %d alias(es).\n",
			len(cfg.Domains), len(cfg.Servers), len(cfg.Users), len(cfg.Aliases))
	}
	return exitOK
}
