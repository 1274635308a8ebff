package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/mailctl/mailctl/server/config"
	sievedeliver "github.com/mailctl/mailctl/server/sieve/deliver"
)

// openFilter sets up the Sieve filter every local delivery goes through
// (SMTP sessions and the queue's local deliverer), with the users' scripts
// of cfg; vacation replies are recorded under <data_dir>/sieve.
func (d *daemon) openFilter(cfg *config.Config, log *slog.Logger) error {
	f, err := sievedeliver.New(sievedeliver.Options{
		Next: countingStore{st: d.st, metrics: d.metrics},
		CreateMailbox: func(ctx context.Context, user, name string) error {
			return d.st.CreateMailbox(ctx, user, name, "")
		},
		Hostname: cfg.Hostname,
		DataDir:  filepath.Join(cfg.DataDir, "sieve"),
		Logger:   log.With("component", "sieve"),
		// The directory's delimiters, set from the configuration at start
		// and at each reload.
		Delimiters: d.dir.RecipientDelimiter,
	})
	if err != nil {
		return fmt.Errorf("sieve filter: %w", err)
	}
	if err := f.SetUsers(sieveUsers(cfg)); err != nil {
		f.Close()
		return err
	}
	d.filter = f
	return nil
}

func sieveUsers(cfg *config.Config) []sievedeliver.User {
	out := make([]sievedeliver.User, 0, len(cfg.Users))
	for _, u := range cfg.Users {
		out = append(out, sievedeliver.User{Address: u.Address, Aliases: u.Aliases, Sieve: u.Sieve})
	}
	return out
}
