package inbound_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailctl/mailctl/server/inbound"
	"github.com/mailctl/mailctl/server/queue"
	"github.com/mailctl/mailctl/server/smtp"
)

// TestDMARCInternationalDomain checks DMARC for a From domain written in
// U-labels (RFC 6532 header): its policy is looked up under the A-labels,
// where a real Knot serves it, and aligned with the SPF domain the SMTP
// service gives in A-labels.
func TestDMARCInternationalDomain(t *testing.T) {
	t.Parallel()
	addr := publish(t, "xn--bcher-kva.example", map[string]string{
		"@":      "v=spf1 ip4:192.0.2.25 -all",
		"_dmarc": "v=DMARC1; p=reject",
	})
	c, err := inbound.New(inbound.Options{Hostname: "mx.example.test",
		Resolver: &queue.DNS{Servers: []string{addr}}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("From: Anna <anna@bücher.example>\r\nTo: δοκιμή@example.test\r\nSubject: Grüße\r\n" +
		"Message-ID: <1@xn--bcher-kva.example>\r\nDate: Mon, 07 Dec 2026 12:00:00 +0000\r\n\r\nHallo\r\n")
	for _, tc := range []struct {
		name, ip, dmarc string
		rejected        bool
	}{
		{"SPF pass aligns", "192.0.2.25", "dmarc=pass", false},
		{"SPF fail: p=reject applies", "198.51.100.1", "dmarc=fail", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			env := smtp.Envelope{RemoteIP: net.ParseIP(tc.ip), Helo: "mail.xn--bcher-kva.example",
				From: "anna@xn--bcher-kva.example", Rcpts: []string{"δοκιμή@example.test"}}
			v, err := c.CheckMessage(ctx, env, bytes.NewReader(msg), int64(len(msg)))
			var serr *gosmtp.SMTPError
			if tc.rejected != (errors.As(err, &serr) && serr.Code == 550) {
				t.Fatalf("CheckMessage error = %v, want rejected %v", err, tc.rejected)
			}
			if !tc.rejected && err != nil {
				t.Fatalf("CheckMessage: %v", err)
			}
			if !strings.Contains(v.Header, tc.dmarc+" header.from=xn--bcher-kva.example") {
				t.Errorf("Authentication-Results lacks %q header.from=xn--bcher-kva.example:\n%s", tc.dmarc, v.Header)
			}
		})
	}
}
