package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// BackupOptions tune Backup.
type BackupOptions struct {
	// Base is the description of the previous backup (server/backup's
	// Base, as JSON) for an incremental backup; nil for a full one.
	Base []byte
}

// Backup streams a backup of the server (`mailctl serve backup` of its
// current release, run as root, which may use the control socket) to w.
// It returns ErrNotDeployed when no release is installed. The stream ends
// with an error when the connection stops answering (Stream's probes).
func Backup(ctx context.Context, t Target, w io.Writer, o BackupOptions) error {
	st, ok := t.(Streamer)
	if !ok {
		return errors.New("back up server: this connection cannot stream")
	}
	l := VPS
	if _, err := t.Run(ctx, "test -x "+ShellQuote(l.Binary()), nil); err != nil {
		if _, ok := ExitStatus(err); ok {
			return ErrNotDeployed
		}
		return fmt.Errorf("back up server: %w", err)
	}
	cmd := ShellQuote(l.Binary()) + " serve backup -config " + ShellQuote(l.ConfigFile)
	if o.Base != nil {
		p := path.Join(l.Base, ".backup-base-"+randomSuffix()+".json")
		if err := t.WriteFile(ctx, p, bytes.NewReader(o.Base), 0o600); err != nil {
			return fmt.Errorf("back up server: send the previous backup's description: %w", err)
		}
		defer t.Run(context.WithoutCancel(ctx), "rm -f "+ShellQuote(p), nil)
		cmd += " -base " + ShellQuote(p)
	}
	if err := st.Stream(ctx, cmd, w); err != nil {
		return fmt.Errorf("back up server: %w", serverError(err))
	}
	return nil
}

// RestoreOptions tune Restore.
type RestoreOptions struct {
	// Force replaces a data directory that holds mail.
	Force bool
	// Health is the check after the server starts again.
	Health Health
	// Uploaded is called when the backup is on the server, before the
	// server is stopped.
	Uploaded func()
}

// Restore copies the backup read from r to the server, then stops the
// server, restores the backup into its data directory as the service user
// (so that the files are the server's) and starts it again, also when the
// restore failed (the data directory is then as it was). The server is
// stopped only once the whole backup is on it. It returns what `serve
// restore` printed.
func Restore(ctx context.Context, t Target, r io.Reader, o RestoreOptions) (string, error) {
	l := VPS
	if _, err := t.Run(ctx, fmt.Sprintf("test -x %s && test -f %s", ShellQuote(l.Binary()), ShellQuote(l.Unit)), nil); err != nil {
		if _, ok := ExitStatus(err); ok {
			return "", ErrNotDeployed
		}
		return "", fmt.Errorf("restore server: %w", err)
	}
	// In the data directory: on the file system the restore unpacks to,
	// readable by root only.
	up := path.Join(l.DataDir, ".restore-upload-"+randomSuffix()+".tar.gz")
	defer t.Run(context.WithoutCancel(ctx), "rm -f "+ShellQuote(up), nil)
	if err := t.WriteFile(ctx, up, r, 0o600); err != nil {
		return "", fmt.Errorf("restore server: upload the backup: %w", err)
	}
	if o.Uploaded != nil {
		o.Uploaded()
	}
	forceFlag := ""
	if o.Force {
		forceFlag = " -force"
	}
	out, err := t.Run(ctx, fmt.Sprintf(`systemctl stop %[1]s
rc=0
runuser -u %[2]s -- %[3]s serve restore -config %[4]s%[5]s - < %[6]s || rc=$?
rm -f %[6]s
systemctl start %[1]s
exit $rc`, serviceName, ServiceUser, ShellQuote(l.Binary()), ShellQuote(l.ConfigFile), forceFlag, ShellQuote(up)), nil)
	if err != nil {
		return string(out), fmt.Errorf("restore server: %w", serverError(err))
	}
	if err := checkHealth(ctx, t, o.Health); err != nil {
		return string(out), fmt.Errorf("restore server: restored, but %w", err)
	}
	return string(out), nil
}

// Backup streams a backup of the lab server to w.
func (lab Lab) Backup(ctx context.Context, w io.Writer, o BackupOptions) error {
	l := lab.Layout()
	if _, err := os.Stat(l.Binary()); err != nil {
		return ErrNotDeployed
	}
	cmd := ShellQuote(l.Binary()) + " serve backup -config " + ShellQuote(l.ConfigFile)
	if o.Base != nil {
		f, err := os.CreateTemp("", "mailctl-backup-base-*.json")
		if err != nil {
			return fmt.Errorf("back up lab server: %w", err)
		}
		defer os.Remove(f.Name())
		_, err = f.Write(o.Base)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("back up lab server: %w", err)
		}
		cmd += " -base " + ShellQuote(f.Name())
	}
	if err := (Local{}).Stream(ctx, cmd, w); err != nil {
		return fmt.Errorf("back up lab server: %w", serverError(err))
	}
	return nil
}

// Restore stops the lab server, restores the backup read from r into its
// data directory, and starts the server again (also when the restore
// failed: the data directory is then as it was), checking o.Health
// (LabHealth when zero). It returns what `serve restore` printed.
func (lab Lab) Restore(ctx context.Context, r io.Reader, o RestoreOptions) (string, error) {
	l := lab.Layout()
	if _, err := os.Stat(l.Binary()); err != nil {
		return "", ErrNotDeployed
	}
	if o.Uploaded != nil {
		o.Uploaded()
	}
	st, wasRunning := lab.running()
	if err := lab.Stop(ctx); err != nil {
		return "", err
	}
	cmd := ShellQuote(l.Binary()) + " serve restore -config " + ShellQuote(l.ConfigFile)
	if o.Force {
		cmd += " -force"
	}
	out, rerr := Local{}.Run(ctx, cmd+" -", r)
	rerr = serverError(rerr)
	if wasRunning {
		if err := lab.start(st.Release, st.Config); err != nil {
			return string(out), errors.Join(rerr, err)
		}
		h := o.Health
		if h.BannerPorts == nil && h.ListenPorts == nil && h.Timeout == 0 {
			h = LabHealth
		}
		if err := lab.health(ctx, h); err != nil {
			return string(out), errors.Join(rerr, fmt.Errorf("lab server after restore: %w", err))
		}
	}
	if rerr != nil {
		return string(out), fmt.Errorf("restore lab server: %w", rerr)
	}
	return string(out), nil
}

// serverError turns a failed `mailctl serve backup|restore` into what it
// said (its "Error: " lines), without the command line; other errors are
// returned as they are.
func serverError(err error) error {
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Signal != "" || !strings.Contains(ee.Stderr, "Error: ") {
		return err
	}
	var msgs []string
	for l := range strings.SplitSeq(ee.Stderr, "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(l), "Error: "); ok {
			msgs = append(msgs, m)
		}
	}
	return &serverErr{msg: strings.Join(msgs, "; "), err: err}
}

type serverErr struct {
	msg string
	err error
}

func (e *serverErr) Error() string { return e.msg }
func (e *serverErr) Unwrap() error { return e.err }
