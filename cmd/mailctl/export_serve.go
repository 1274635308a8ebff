package main

import (
	"bufio"
	"context"

	"github.com/mailctl/mailctl/server/daemon"
)

// `mailctl serve export` and `mailctl serve import` run on the server (the
// workstation's mailctl export and import start them over SSH): they
// carry a transfer stream (internal/mailfmt) between their standard input
// or output and the running server's control socket.

func runServeExport(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "serve export", "-user ADDR [-mailbox NAME] [-digests|-mailboxes|-dav] (-config FILE | -socket PATH)")
	cfgPath := fs.String("config", "", "server configuration `FILE`; its control socket is used")
	socket := fs.String("socket", "", "control socket `PATH` (instead of -config)")
	user := fs.String("user", "", "the user `ADDR` whose mail is written")
	mailbox := fs.String("mailbox", "", "only the mailbox `NAME`")
	digests := fs.Bool("digests", false, "the SHA-256 of each message instead of its bytes")
	mailboxes := fs.Bool("mailboxes", false, "the mailboxes only, without their messages")
	davOnly := fs.Bool("dav", false, "the user's calendars and address books instead of mail: a tar stream of calendars/NAME.ics and contacts/NAME.vcf")
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return errorf(e, "serve export: unexpected argument %q", fs.Arg(0))
	}
	if *user == "" {
		return errorf(e, "serve export needs -user ADDR")
	}
	path, err := controlSocket(*socket, *cfgPath)
	if err != nil {
		return errorf(e, "serve export: %v", err)
	}
	w := bufio.NewWriterSize(e.Stdout, 64<<10)
	if *davOnly {
		if *mailbox != "" || *digests || *mailboxes {
			return errorf(e, "serve export: -dav excludes -mailbox, -digests and -mailboxes")
		}
		err = daemon.ExportDAV(ctx, path, *user, w)
	} else {
		err = daemon.Export(ctx, path, daemon.ExportOptions{User: *user, Mailbox: *mailbox, Digests: *digests, MailboxesOnly: *mailboxes}, w)
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return errorf(e, "serve export: %v", err)
	}
	return exitOK
}
