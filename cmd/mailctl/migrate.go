package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"golang.org/x/term"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/migrate"
)

func init() {
	register(&command{
		name:     "migrate",
		synopsis: "import mailboxes, calendars and contacts from another provider (Google, ...)",
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
	fs := newFlagSet(e, "migrate", "[-name M] [-user U]... [-dry-run] [-parallel N] [-state DIR] [-connect HOST:PORT=ADDR]... [-ca-file FILE] [-var NAME=VALUE]...")
	name := fs.String("name", "", "the migration block `M` to run (needed when there are several)")
	var users userList
	fs.Var(&users, "user", "migrate only user `U` (repeatable)")
	dryRun := fs.Bool("dry-run", false, "count what would be copied; write nothing")
	parallel := fs.Int("parallel", 4, "users migrated at once")
	stateDir := fs.String("state", "", "directory of the migration state (default <config dir>/.mailctl/migrate)")
	verbose := fs.Bool("v", false, "log events (retries, folders) on stderr")
	var connect listFlag
	fs.Var(&connect, "connect", "dial `HOST:PORT=ADDR` instead of the source's or target's HOST:PORT; the certificate is still checked for HOST (repeatable)")
	caFile := fs.String("ca-file", "", "extra trusted certificate authorities for the source and the target, PEM `FILE`")
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
	if diags := secretErrors(m, jobs); len(diags) > 0 {
		config.WriteDiagnostics(e.Stderr, cfg.FilesOrNil(), diags, e.Color)
		return exitError
	}
	if err := endpointOverrides(jobs, connect, *caFile); err != nil {
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
	if errors.Is(err, context.Canceled) {
		done := 0
		for _, u := range sum.Users {
			if u.Err == nil {
				done++
			}
		}
		return errorf(e, "migration %q interrupted with %d of %d users done: run the same command again to resume where it stopped", m.Name, done, len(sum.Users))
	}
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
	want := map[string]bool{} // -user addresses, true once found
	for _, u := range only {
		want[u] = false
	}
	var jobs []migrate.Job
	for _, u := range m.Users {
		if len(only) > 0 {
			if _, ok := want[u.Address]; !ok {
				continue
			}
			want[u.Address] = true
		}
		var target migrate.Endpoint
		if m.DAV.Mail {
			var err error
			if target, err = migrationTarget(cfg, m, u.Address); err != nil {
				return nil, err
			}
		}
		login := u.Login
		if login == "" {
			login = u.Address
		}
		dav, err := davJob(cfg, m, u, login)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, migrate.Job{
			NoMail:     !m.DAV.Mail,
			DAV:        dav,
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
	for _, u := range only {
		if !want[u] {
			return nil, fmt.Errorf("-user %s: not a user of migration %q", u, m.Name)
		}
	}
	return jobs, nil
}

// secretErrors are the errors reading the credentials of the jobs' users
// (the configuration loads without them: only migrate needs them).
func secretErrors(m *config.Migration, jobs []migrate.Job) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, u := range m.Users {
		for _, j := range jobs {
			if j.User == u.Address {
				diags = append(diags, u.SecretErrors...)
			}
		}
	}
	return diags
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

// endpointOverrides applies -connect and -ca-file to the jobs' endpoints.
// Every -connect must name the address of a source or target.
func endpointOverrides(jobs []migrate.Job, connect []string, caFile string) error {
	dials := map[string]string{}
	used := map[string]bool{}
	for _, c := range connect {
		from, to, ok := strings.Cut(c, "=")
		if _, _, err := net.SplitHostPort(to); !ok || err != nil || from == "" {
			return fmt.Errorf("-connect wants HOST:PORT=ADDR:PORT, got %q", c)
		}
		dials[strings.ToLower(from)] = to
	}
	if caFile != "" {
		if _, err := os.Stat(caFile); err != nil {
			return fmt.Errorf("-ca-file: %w", err)
		}
	}
	for i := range jobs {
		for _, ep := range []*migrate.Endpoint{&jobs[i].Source, &jobs[i].Target} {
			if to, ok := dials[strings.ToLower(ep.Address)]; ok {
				ep.Dial = to
				used[strings.ToLower(ep.Address)] = true
			}
			if caFile != "" {
				ep.MoreCAFiles = append(ep.MoreCAFiles, caFile)
			}
		}
		if d := jobs[i].DAV; d != nil && caFile != "" {
			d.Source.MoreCAFiles = append(d.Source.MoreCAFiles, caFile)
			d.Target.MoreCAFiles = append(d.Target.MoreCAFiles, caFile)
		}
	}
	for from := range dials {
		if !used[from] {
			var addrs []string
			for _, j := range jobs {
				addrs = append(addrs, j.Source.Address, j.Target.Address)
			}
			slices.Sort(addrs)
			return fmt.Errorf("-connect %s: not the address of a source or target of this migration (%s)", from, strings.Join(slices.Compact(addrs), ", "))
		}
	}
	return nil
}
