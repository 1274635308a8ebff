package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/term"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/migrate"
)

func init() {
	register(&command{
		name:     "migrate",
		synopsis: "import mailboxes from another IMAP server (Google Workspace, ...)",
		run:      runMigrate,
	})
}

// userList is a repeatable -user flag.
type userList []string

func (u *userList) String() string { return strings.Join(*u, ",") }
func (u *userList) Set(v string) error {
	*u = append(*u, strings.ToLower(strings.TrimSpace(v)))
	return nil
}

// phaseNotes say what a run does in each phase of the cut-over.
var phaseNotes = map[string]string{
	config.PhasePresync: "full copy; mail still arrives at the old provider: run again at cut-over for the delta",
	config.PhaseCutover: "delta copy of what arrived since the last run; MX points to the new server",
	config.PhaseDone:    "the cut-over is over: this run copies only what is still new at the source",
}

func runMigrate(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "migrate", "[-name M] [-user U]... [-dry-run] [-parallel N] [-state DIR] [-var NAME=VALUE]...")
	name := fs.String("name", "", "the migration block `M` to run (needed when there are several)")
	var users userList
	fs.Var(&users, "user", "migrate only user `U` (repeatable)")
	dryRun := fs.Bool("dry-run", false, "count what would be copied; write nothing")
	parallel := fs.Int("parallel", 4, "users migrated at once")
	stateDir := fs.String("state", "", "directory of the migration state (default <config dir>/.mailctl/migrate)")
	verbose := fs.Bool("v", false, "log events (retries, folders) on stderr")
	vars := addVarFlag(fs)
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return errorf(e, "migrate takes no arguments (got %q)", fs.Arg(0))
	}
	if *parallel < 1 {
		return errorf(e, "-parallel %d: want at least 1", *parallel)
	}
	cfg := loadConfig(e, vars)
	if cfg == nil {
		return exitError
	}
	m, err := pickMigration(cfg, *name)
	if err != nil {
		return errorf(e, "%v", err)
	}
	jobs, err := migrationJobs(cfg, m, users)
	if err != nil {
		return errorf(e, "%v", err)
	}
	dir := *stateDir
	if dir == "" {
		dir = filepath.Join(cfg.Dir, ".mailctl", "migrate")
	}
	fmt.Fprintf(e.Stdout, "Migration %q, phase %s: %s.\n", m.Name, m.Phase, phaseNotes[m.Phase])
	if *dryRun {
		fmt.Fprintln(e.Stdout, "Dry run: nothing is written to the target or the state.")
	}
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(e.Stderr, nil))
	}
	sum, err := migrate.Run(ctx, jobs, migrate.Options{
		Parallel: *parallel,
		DryRun:   *dryRun,
		Progress: e.Stderr,
		Terminal: isTerminal(e.Stderr) && !*verbose,
		Logger:   logger,
		State:    filepath.Join(dir, m.Name+".db"),
	})
	sum.Write(e.Stdout)
	if err != nil {
		return errorf(e, "migration %q: %v", m.Name, err)
	}
	if !sum.OK() {
		return exitError
	}
	return exitOK
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func pickMigration(cfg *config.Config, name string) (*config.Migration, error) {
	if len(cfg.Migrations) == 0 {
		return nil, fmt.Errorf("no migration block in %s", cfg.Dir)
	}
	if name == "" {
		if len(cfg.Migrations) > 1 {
			var names []string
			for _, m := range cfg.Migrations {
				names = append(names, m.Name)
			}
			return nil, fmt.Errorf("several migrations (%s): choose one with -name", strings.Join(names, ", "))
		}
		return cfg.Migrations[0], nil
	}
	for _, m := range cfg.Migrations {
		if m.Name == name {
			return m, nil
		}
	}
	return nil, fmt.Errorf("no migration %q", name)
}

// migrationJobs turns a migration block into one job per user (only those
// of only, when given).
func migrationJobs(cfg *config.Config, m *config.Migration, only []string) ([]migrate.Job, error) {
	want := map[string]bool{}
	for _, u := range only {
		want[u] = true
	}
	var jobs []migrate.Job
	for _, u := range m.Users {
		if len(want) > 0 && !want[u.Address] {
			continue
		}
		delete(want, u.Address)
		target, err := migrationTarget(cfg, m, u.Address)
		if err != nil {
			return nil, err
		}
		login := u.Login
		if login == "" {
			login = u.Address
		}
		jobs = append(jobs, migrate.Job{
			User:       u.Address,
			Source:     endpoint(cfg, m.Source),
			SourceAuth: migrate.Credentials{Username: login, Password: u.Password.Str, TokenCommand: u.TokenCommand, TokenDir: cfg.Dir},
			Target:     target,
			TargetAuth: migrate.Credentials{Username: u.Address, Password: u.TargetPassword.Str},
			Folders:    m.Folders,
			Exclude:    m.Exclude,
			Duplicates: m.Duplicates,
		})
	}
	for u := range want {
		return nil, fmt.Errorf("-user %s: not a user of migration %q", u, m.Name)
	}
	return jobs, nil
}

func endpoint(cfg *config.Config, e config.MigrationEndpoint) migrate.Endpoint {
	ca := e.CAFile
	if ca != "" && !filepath.IsAbs(ca) {
		ca = filepath.Join(cfg.Dir, ca)
	}
	return migrate.Endpoint{Address: e.Address, TLS: e.TLS, CAFile: ca}
}

// migrationTarget is the migration's target block, or the IMAPS port of
// the server of the user's domain.
func migrationTarget(cfg *config.Config, m *config.Migration, user string) (migrate.Endpoint, error) {
	if m.Target != nil {
		return endpoint(cfg, *m.Target), nil
	}
	domain := user[strings.LastIndexByte(user, '@')+1:]
	for _, d := range cfg.Domains {
		if d.Name != domain || d.Server == nil {
			continue
		}
		port := d.Server.Ports.IMAPS
		if port == 0 {
			port = config.DefaultPorts.IMAPS
		}
		return migrate.Endpoint{Address: d.Server.Hostname + ":" + strconv.Itoa(port), TLS: "implicit"}, nil
	}
	return migrate.Endpoint{}, fmt.Errorf("migration %q: user %s: no server for domain %s (add a target block)", m.Name, user, domain)
}
