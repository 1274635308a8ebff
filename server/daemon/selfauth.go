package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/inbound"
	"github.com/mailctl/mailctl/server/queue"
	"github.com/mailctl/mailctl/server/smtp"
)

// Mail that an authenticated user submits to a local mailbox never crosses
// an MX, so nothing would tell its reader (or `mailctl verify`'s round
// trip) whether a remote receiver would find it authentic. The submission
// servers therefore hand local recipients to the outbound queue like
// remote ones (submissionDirectory): the queue DKIM-signs the message, and
// its local delivery (queue.StampingDeliverer) adds the
// Authentication-Results field that inbound.Checker.EvaluateOwn computes
// for the server's own sending IPs, through the configured DNS servers.
// Mail received on port 25 keeps its own checks.

// submissionDirectory is the directory of the submission servers: local
// mailboxes resolve as queue recipients, so their mail is signed and
// stamped on its way through the queue.
type submissionDirectory struct {
	*auth.Directory
	// quota, when set, keeps recipients whose mailboxes are all full as
	// local users, so that the SMTP server still refuses them at RCPT
	// (552) rather than the queue bouncing the message later.
	quota smtp.QuotaReporter
}

// Resolve resolves addr and turns local users into queue recipients.
func (d submissionDirectory) Resolve(addr string) (auth.Resolution, error) {
	res, err := d.Directory.Resolve(addr)
	if err != nil || len(res.Users) == 0 || d.allFull(res.Users) {
		return res, err
	}
	res.Remote = append(res.Remote, res.Users...)
	res.Users = nil
	return res, nil
}

// allFull reports whether every user is at or over its quota. (Resolve
// has no context: the store answers from its index at once.)
func (d submissionDirectory) allFull(users []string) bool {
	if d.quota == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, u := range users {
		q, err := d.quota.Quota(ctx, u)
		if err != nil || q <= 0 {
			return false
		}
		used, _, err := d.quota.Usage(ctx, u)
		if err != nil || used < q {
			return false
		}
	}
	return true
}

// ownStampTimeout bounds the DNS work of stamping one submitted message.
const ownStampTimeout = 20 * time.Second

// ownStamper returns the queue's Stamper for submitted local mail: the
// Authentication-Results field of checker.EvaluateOwn. When the sending
// IPs cannot be found the message is delivered without it (logged).
func ownStamper(cfg *config.Config, checker *inbound.Checker, res inbound.Resolver, log *slog.Logger) queue.Stamper {
	return func(ctx context.Context, from string, msg []byte) (string, [][2]int64, error) {
		// Unanswered DNS questions give temperror results, not a delivery
		// held for long.
		ctx, cancel := context.WithTimeout(ctx, ownStampTimeout)
		defer cancel()
		ips, err := sendingIPs(ctx, cfg, res)
		if len(ips) == 0 {
			log.Warn("no Authentication-Results for a submitted local message: the server's sending IPs are unknown",
				"host", cfg.Hostname, "err", err)
			return "", nil, nil
		}
		header, remove, _, err := checker.EvaluateOwn(ctx, inbound.Own{IPs: ips, Helo: cfg.Hostname, From: from},
			bytes.NewReader(msg), int64(len(msg)))
		return header, remove, err
	}
}

// sendingIPs are the addresses receivers see this server's mail come
// from: outbound.source_ipv4/source_ipv6 when set, else the A and AAAA
// records of the host name. (Mail that leaves through a relay comes from
// the relay's addresses, which the server cannot know: those are not
// evaluated.)
func sendingIPs(ctx context.Context, cfg *config.Config, res inbound.Resolver) ([]net.IP, error) {
	var ips []net.IP
	if ob := cfg.Outbound; ob != nil {
		for _, s := range []string{ob.SourceIPv4, ob.SourceIPv6} {
			if ip := net.ParseIP(s); ip != nil {
				ips = append(ips, ip)
			}
		}
	}
	if len(ips) > 0 {
		return ips, nil
	}
	addrs, err := res.LookupIPAddr(ctx, strings.TrimSuffix(cfg.Hostname, "."))
	for _, a := range addrs {
		ips = append(ips, a.IP)
	}
	return ips, err
}
