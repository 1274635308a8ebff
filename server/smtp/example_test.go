package smtp_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/dkim"
	"github.com/mailctl/mailctl/server/inbound"
	"github.com/mailctl/mailctl/server/queue"
	"github.com/mailctl/mailctl/server/smtp"
	"github.com/mailctl/mailctl/server/store"
)

// Example shows how `mailctl serve` wires the SMTP services, the outbound
// queue and the inbound checks from the server configuration. On config reload, call dir.Update and authn.Update with the
// new configuration; the servers keep running.
func Example() {
	ctx := context.Background()
	logger := slog.Default()
	cfg, err := config.Load("/etc/mailctl/server.json")
	if err != nil {
		logger.Error("load config", "err", err)
		return
	}
	st, err := store.Open(ctx, cfg.DataDir+"/store", logger)
	if err != nil {
		return
	}
	defer st.Close()
	for _, u := range cfg.Users {
		st.EnsureUser(ctx, u.Address, u.QuotaBytes)
	}
	dir, err := auth.NewDirectory(cfg.DomainNames(), cfg.AuthUsers(), cfg.AuthAliases())
	if err != nil {
		return
	}
	authn, err := auth.NewAuthenticator(cfg.AuthUsers(), auth.AuthenticatorOptions{
		MaxFailures: cfg.Limits.AuthFailuresPerIP, Logger: logger})
	if err != nil {
		return
	}
	var tlsConfig *tls.Config // from server/tlsconf

	// Outbound: DKIM keys of every domain, the resolver, the queue.
	keys, err := dkim.KeysFromConfig(cfg)
	if err != nil {
		return
	}
	signer := dkim.NewSigner(keys) // on reload: signer.SetKeys(newKeys)
	res, err := queue.ResolverFromConfig(cfg)
	if err != nil {
		return
	}
	qopts, err := queue.OptionsFromConfig(cfg, res, signer, dir, st, logger)
	if err != nil {
		return
	}
	q, err := queue.Open(ctx, qopts)
	if err != nil {
		return
	}
	defer q.Close() // after the SMTP servers' Shutdown
	go q.Run(ctx)

	// Inbound checks on port 25 (DNSBL, greylisting, SPF, DKIM, DMARC).
	iopts, greylist, err := inbound.OptionsFromConfig(cfg, res, logger)
	if err != nil {
		return
	}
	if greylist != nil {
		defer greylist.Close()
	}
	checker, err := inbound.New(iopts)
	if err != nil {
		return
	}

	for mode, addr := range map[smtp.Mode]string{
		smtp.ModeMX: cfg.Listen.SMTP, smtp.ModeSubmission: cfg.Listen.Submission, smtp.ModeSubmissions: cfg.Listen.Submissions,
	} {
		if addr == "" {
			continue // disabled
		}
		opts := smtp.Options{
			Mode: mode, Hostname: cfg.Hostname, TLSConfig: tlsConfig,
			Store: st, Directory: dir, Auth: authn,
			Queue:  q,
			Limits: smtp.LimitsFromConfig(cfg.Limits), Logger: logger,
		}
		if mode == smtp.ModeMX {
			opts.Inbound = checker
		}
		srv, err := smtp.New(opts)
		if err != nil {
			return
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return
		}
		go srv.Serve(ln)
		defer srv.Shutdown(ctx)
	}
}
