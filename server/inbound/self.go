package inbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailctl/mailctl/server/smtp"
)

// Own is what EvaluateOwn needs to know of a message this server sends.
type Own struct {
	// IPs are the addresses the server sends from (its outbound source
	// addresses, else its host name's A/AAAA records). At least one.
	IPs []net.IP
	// Helo is the name the server gives in EHLO (its host name).
	Helo string
	// From is the envelope sender of the submission ("" for a bounce).
	From string
}

// EvaluateOwn computes the Authentication-Results field that a receiver
// would add to msg (already DKIM-signed) sent by this server: iprev and
// SPF (RFC 7208) for each of the server's sending IPs, DKIM (RFC 6376) and
// DMARC (RFC 7489) with alignment, through the checker's resolver. It is
// for mail that authenticated users submit to local mailboxes, which never
// crosses an MX: the field lets them (and `mailctl verify`) see what a
// remote receiver sees. When the IPs do not all give the same SPF result,
// the field of the first IP that does not pass is returned.
//
// DMARC policies are not applied (the message is delivered whatever the
// result) and no DNSBL or greylisting is consulted. The returned ranges are
// Authentication-Results fields already in msg that claim this server's
// authserv-id (forgeries), to leave out as the MX does.
func (c *Checker) EvaluateOwn(ctx context.Context, own Own, msg io.ReaderAt, size int64) (header string, remove [][2]int64, out Outcome, err error) {
	if len(own.IPs) == 0 {
		return "", nil, Outcome{}, errors.New("inbound: evaluate own message: no sending IP")
	}
	for i, ip := range own.IPs {
		env := smtp.Envelope{RemoteIP: ip, Helo: own.Helo, From: own.From, TLS: true}
		v, o, err := c.check(ctx, env, msg, size)
		var serr *gosmtp.SMTPError
		if err != nil && !errors.As(err, &serr) {
			return "", nil, o, fmt.Errorf("inbound: evaluate own message from %s: %w", ip, err)
		}
		// A DMARC reject is only recorded: the message is ours.
		o.Policy = ""
		if i == 0 || (out.SPF == "pass" && o.SPF != "pass") {
			header, remove, out = v.Header, v.Remove, o
		}
	}
	c.log.Info("own message evaluated", "ips", ipList(own.IPs), "spf", out.SPF, "dkim", out.DKIM, "dmarc", out.DMARC)
	return header, remove, out, nil
}

func ipList(ips []net.IP) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ",")
}
