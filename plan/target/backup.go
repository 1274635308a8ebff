package target

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/remote"
)

// health is the check of the server's ports after a start.
func (c *Conn) health() remote.Health {
	p := c.srv.Ports
	h := remote.Health{}
	for _, port := range []int{p.SMTP, p.Submission} {
		if port != 0 {
			h.BannerPorts = append(h.BannerPorts, port)
		}
	}
	for _, port := range []int{p.Submissions, p.IMAPS, p.IMAP} {
		if port != 0 {
			h.ListenPorts = append(h.ListenPorts, port)
		}
	}
	if c.lab != nil {
		h.Host = desired.LabListenHost(c.srv)
	}
	return h
}

// Backup streams a backup of the running server to w (server/backup's
// format), over SSH or from the lab.
func (c *Conn) Backup(ctx context.Context, w io.Writer, o remote.BackupOptions) error {
	if c.lab != nil {
		return c.lab.Backup(ctx, w, o)
	}
	return remote.Backup(ctx, c.t, w, o)
}

// Restore restores the backup read from r onto the server, which is
// stopped meanwhile and started again (o.Health is filled in).
func (c *Conn) Restore(ctx context.Context, r io.Reader, o remote.RestoreOptions) (string, error) {
	o.Health = c.health()
	if c.lab != nil {
		return c.lab.Restore(ctx, r, o)
	}
	return remote.Restore(ctx, c.t, r, o)
}

// Occupied says what mail the running server holds ("" for none, or when
// it does not run: `serve restore` checks again once it is stopped). A
// restore would replace it.
func (c *Conn) Occupied(ctx context.Context) (string, error) {
	var raw []byte
	var err error
	if c.lab != nil {
		if _, ok := c.lab.Running(); !ok {
			return "", nil
		}
		raw, err = c.lab.Status(ctx)
	} else {
		raw, err = remote.Status(ctx, c.t)
	}
	if errors.Is(err, remote.ErrNotDeployed) {
		return "", remote.ErrNotDeployed
	}
	if err != nil {
		c.log.Debug("server status unavailable before a restore", "server", c.srv.Name, "err", err)
		return "", nil
	}
	var st contract.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", fmt.Errorf("read status of server.%s: %w", c.srv.Name, err)
	}
	n, users := 0, 0
	for _, u := range st.Users {
		if u.Messages > 0 {
			n += u.Messages
			users++
		}
	}
	var what []string
	if n > 0 {
		what = append(what, fmt.Sprintf("%d messages of %d users", n, users))
	}
	if st.QueueMessages > 0 {
		what = append(what, fmt.Sprintf("%d queued messages", st.QueueMessages))
	}
	return strings.Join(what, " and "), nil
}
