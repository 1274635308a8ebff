package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mailctl/mailctl/server/backup"
	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/daemon"
)

// runServeBackup writes a backup of the running server to standard output:
// what `mailctl backup` runs on the server (over SSH, or locally for the
// lab).
func runServeBackup(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "serve backup", "(-config FILE | -socket PATH) > BACKUP.tar.gz")
	cfgPath := fs.String("config", "", "server configuration `FILE`; its control socket is asked")
	socket := fs.String("socket", "", "control socket `PATH` (instead of -config)")
	baseFile := fs.String("base", "", "take an incremental backup against the backup described in `FILE` (what mailctl backup -incremental sends)")
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return errorf(e, "serve backup: unexpected argument %q", fs.Arg(0))
	}
	var base *daemon.BackupBase
	if *baseFile != "" {
		b, err := os.ReadFile(*baseFile)
		if err != nil {
			return errorf(e, "serve backup: %v", err)
		}
		base = new(daemon.BackupBase)
		if err := json.Unmarshal(b, base); err != nil || base.Manifest == nil || base.Name == "" {
			return errorf(e, "serve backup: %s does not describe a backup", *baseFile)
		}
	}
	if f, ok := e.Stdout.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return errorf(e, "serve backup writes the backup to standard output: redirect it to a file")
		}
	}
	path, err := controlSocket(*socket, *cfgPath)
	if err != nil {
		return errorf(e, "serve backup: %v", err)
	}
	if _, err := daemon.Backup(ctx, path, e.Stdout, base); err != nil {
		return errorf(e, "serve backup: %v", err)
	}
	return exitOK
}

// runServeRestore restores a backup into the data directory of a stopped
// server.
func runServeRestore(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "serve restore", "-config FILE [-force] (BACKUP | - for standard input)")
	cfgPath := fs.String("config", "", "server configuration `FILE`; the backup goes into its data directory")
	force := fs.Bool("force", false, "replace a data directory that holds mail")
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() != 1 {
		return errorf(e, "serve restore needs one BACKUP file (or - for standard input)")
	}
	if *cfgPath == "" {
		return errorf(e, "serve restore needs -config FILE")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return errorf(e, "serve restore: %v", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	var in io.Reader = e.Stdin
	if name := fs.Arg(0); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return errorf(e, "serve restore: %v", err)
		}
		defer f.Close()
		in = f
	}
	m, err := backup.Restore(ctx, in, cfg.DataDir, *force)
	if err != nil {
		return errorf(e, "serve restore: %v", err)
	}
	fmt.Fprintf(e.Stdout, "Restored the backup of %s taken %s (%d files, %s) into %s.\n",
		m.Hostname, m.Created.Format("2006-01-02 15:04:05 MST"), len(m.Files), bytesIEC(m.Bytes()), cfg.DataDir)
	return exitOK
}
