// Command mailctl turns a version-controlled HCL description of a mail setup
// into a running, verified mail service: validate, plan, apply, verify, and
// serve (the bundled mail server that apply deploys).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], newEnv())
	stop()
	os.Exit(code)
}
