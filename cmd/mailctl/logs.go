package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/target"
	"github.com/mailctl/mailctl/remote"
)

func init() {
	register(&command{name: "logs", synopsis: "print a server's log: its journal over SSH, the lab's log file locally", run: runLogs})
}

const logsHelp = `On a VPS the log is the journal of the mailctl unit (journalctl -u mailctl
-o short-iso, run over SSH); for the lab it is the log file under the lab's
directory (.mailctl/mailctl.log). The server logs one JSON object a line.
With -f, new lines are printed as they come until Ctrl-C.
`

// defaultLogLines is how many lines logs prints without -n and -since.
const defaultLogLines = 100

func runLogs(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "logs", "[-server NAME] [-f] [-since DURATION|TIME] [-n N] [-accept-new-host-key]")
	setUsageFooter(fs, func(w io.Writer) { fmt.Fprint(w, logsHelp) })
	name := fs.String("server", "", "the server `NAME` (needed when the configuration has several)")
	followFlag := fs.Bool("f", false, "keep printing new lines until interrupted (Ctrl-C)")
	since := fs.String("since", "", "only lines logged since `DURATION|TIME`: a duration back from now (90m, 2h, 3d) or a time (2026-12-07, \"2026-12-07 08:00\", RFC 3339)")
	lines := fs.Int("n", -1, "print the last `N` lines (default 100, or every line with -since)")
	acceptNew := fs.Bool("accept-new-host-key", false, "trust and record the SSH host key of a server contacted for the first time (a changed key is always refused)")
	timeout := fs.Duration("timeout", 30*time.Second, "time limit to reach the server and, without -f, to read its log")
	vars := addVarFlag(fs)
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return errorf(e, "logs takes no arguments (got %q); use -server NAME to select a server", strings.Join(fs.Args(), " "))
	}
	opts := remote.LogOptions{Follow: *followFlag, Lines: *lines}
	if *since != "" {
		t, err := parseSince(*since, time.Now())
		if err != nil {
			return errorf(e, "-since: %v", err)
		}
		opts.Since = t
	}
	if opts.Lines < 0 {
		opts.Lines = defaultLogLines
		if !opts.Since.IsZero() {
			opts.Lines = 0
		}
	}
	cfg := loadConfig(e, vars)
	if cfg == nil {
		return exitError
	}
	s, err := oneServer(cfg, *name)
	if err != nil {
		return errorf(e, "%v", err)
	}
	if s.Local != nil {
		lab := remote.Lab{Dir: desired.LocalDir(cfg, s)}
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if !opts.Follow {
			rctx, cancel = context.WithTimeout(ctx, *timeout)
		}
		defer cancel()
		if err := lab.Logs(rctx, opts, e.Stdout); err != nil {
			return errorf(e, "logs of server.%s: %v", s.Name, err)
		}
		return exitOK
	}
	dctx, cancel := context.WithTimeout(ctx, *timeout)
	conn, err := target.Open(dctx, cfg, s, target.Options{AcceptNewHostKey: *acceptNew, Passphrase: passphrasePrompt(e), Logger: logger(e)})
	cancel()
	if err != nil {
		return errorf(e, "%v", err)
	}
	defer conn.Close()
	st, ok := conn.Target().(remote.Streamer)
	if !ok {
		return errorf(e, "logs of server.%s: its connection cannot stream", s.Name)
	}
	rctx, rcancel := ctx, context.CancelFunc(func() {})
	if !opts.Follow {
		rctx, rcancel = context.WithTimeout(ctx, *timeout)
	}
	defer rcancel()
	if err := remote.Journal(rctx, st, opts, e.Stdout); err != nil {
		return errorf(e, "logs of server.%s: %v", s.Name, err)
	}
	return exitOK
}

// oneServer returns the server called name, or the only server when name
// is empty.
func oneServer(cfg *config.Config, name string) (*config.Server, error) {
	var all []string
	for _, s := range cfg.Servers {
		all = append(all, s.Name)
	}
	if name == "" {
		if len(cfg.Servers) == 1 {
			return cfg.Servers[0], nil
		}
		if len(cfg.Servers) == 0 {
			return nil, fmt.Errorf("the configuration has no server")
		}
		return nil, fmt.Errorf("the configuration has several servers (%s): choose one with -server NAME", strings.Join(all, ", "))
	}
	if s := cfg.ServerByName(name); s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("no server %q in the configuration (servers: %s)%s", name, strings.Join(all, ", "), didYouMean(name, all))
}

// parseSince reads -since: a duration back from now (with d for days) or
// a time, in the local time zone unless it says otherwise.
func parseSince(s string, now time.Time) (time.Time, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if d, err := time.ParseDuration(n + "h"); err == nil && d >= 0 {
			return now.Add(-24 * d), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: want a duration back from now, not a negative one", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (90m, 2h, 3d) nor a time (2026-12-07, \"2026-12-07 08:00\", RFC 3339)", s)
}
