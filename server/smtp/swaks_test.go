package smtp_test

import (
	"context"
	"encoding/base64"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/smtp"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// swaks runs the swaks SMTP client (Debian package swaks) against addr and
// returns its transcript and exit status.
func swaks(t *testing.T, addr string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all := append([]string{"--server", addr, "--ehlo", "client.remote.example", "--timeout", "20"}, args...)
	out, err := exec.CommandContext(ctx, "swaks", all...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	default:
		t.Fatalf("run swaks: %v\n%s", err, out)
	}
	return "", -1
}

func TestSwaksMXDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	addr := e.start(t, smtp.ModeMX, nil)
	for _, tc := range []struct {
		name  string
		extra []string
		with  string
	}{
		{"plain", nil, "with ESMTP id"},
		{"starttls", []string{"--tls"}, "with ESMTPS id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := map[string]string{"plain": "alice@example.test", "starttls": "bob@example.test"}[tc.name]
			out, code := swaks(t, addr, append([]string{"--from", "someone@remote.example", "--to", user,
				"--header", "Subject: test " + tc.name, "--body", "hello " + tc.name}, tc.extra...)...)
			if code != 0 || !strings.Contains(out, "  250 2.0.0 OK") {
				t.Fatalf("swaks exit %d, want 0 and 250:\n%s", code, out)
			}
			box := e.inbox(t, user)
			if len(box) != 1 {
				t.Fatalf("%s has %d messages, want 1", user, len(box))
			}
			m := box[0]
			if !strings.HasPrefix(m, "Received: from client.remote.example ([127.0.0.1])\r\n\tby mail.example.test "+tc.with) {
				t.Errorf("message does not start with our Received header:\n%s", m)
			}
			if !strings.Contains(m, "for <"+user+">") || !strings.Contains(m, "Subject: test "+tc.name) || !strings.Contains(m, "hello "+tc.name) {
				t.Errorf("message lacks for clause, subject or body:\n%s", m)
			}
		})
	}
}

func TestSwaksSubmission(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	sub := e.start(t, smtp.ModeSubmission, nil)
	subs := e.start(t, smtp.ModeSubmissions, nil)
	tests := []struct {
		name string
		addr string
		args []string
	}{
		{"587 STARTTLS AUTH PLAIN", sub, []string{"--tls", "--auth", "PLAIN"}},
		{"587 STARTTLS AUTH LOGIN", sub, []string{"--tls", "--auth", "LOGIN"}},
		{"465 implicit TLS AUTH PLAIN", subs, []string{"--tlsc", "--auth", "PLAIN"}},
		{"465 implicit TLS AUTH LOGIN", subs, []string{"--tlsc", "--auth", "LOGIN"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			subject := "Subject: submission " + tc.name
			args := append([]string{"--auth-user", "alice@example.test", "--auth-password", alicePW,
				"--from", "alice@example.test", "--to", "bob@example.test", "--header", subject}, tc.args...)
			out, code := swaks(t, tc.addr, args...)
			if code != 0 || !strings.Contains(out, "235 2.0.0") {
				t.Fatalf("swaks exit %d, want 0 and 235:\n%s", code, out)
			}
			if strings.Contains(out, alicePW) {
				t.Errorf("transcript shows the password in clear (it must be base64 inside TLS only)")
			}
			box := e.inbox(t, "bob@example.test")
			if len(box) != i+1 {
				t.Fatalf("bob has %d messages, want %d", len(box), i+1)
			}
			m := box[i]
			if !strings.Contains(m, "with ESMTPSA id") || !strings.Contains(m, subject) {
				t.Errorf("message lacks ESMTPSA Received or subject:\n%s", m)
			}
		})
	}
	t.Run("remote recipient goes to the queue", func(t *testing.T) {
		out, code := swaks(t, sub, "--tls", "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", alicePW,
			"--from", "contact@example.test", "--to", "friend@remote.example", "--header", "Subject: out")
		if code != 0 {
			t.Fatalf("swaks exit %d:\n%s", code, out)
		}
		q := e.queue.all()
		if len(q) != 1 || q[0].from != "contact@example.test" || strings.Join(q[0].to, ",") != "friend@remote.example" ||
			!strings.Contains(q[0].body, "Subject: out") || !strings.HasPrefix(q[0].body, "Received: ") {
			t.Fatalf("queue = %+v, want the message from contact@ to friend@remote.example", q)
		}
	})
}

func TestSwaksRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	mx := e.start(t, smtp.ModeMX, nil)
	small := e.start(t, smtp.ModeMX, func(o *smtp.Options) { o.Limits.MaxMessageBytes = 4096 })
	sub := e.start(t, smtp.ModeSubmission, nil)
	noQueue := e.start(t, smtp.ModeSubmission, func(o *smtp.Options) { o.Queue = nil })
	big := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", 200) // ~13 KB
	tests := []struct {
		name string
		addr string
		args []string
		want string
	}{
		{"relay refused", mx, []string{"--from", "alice@example.test", "--to", "victim@remote.example"}, "* 554 5.7.1"},
		{"unknown user", mx, []string{"--from", "x@remote.example", "--to", "nobody@example.test"}, "* 550 5.1.1"},
		{"oversize", small, []string{"--from", "x@remote.example", "--to", "alice@example.test", "--body", big}, "* 552 5.3.4"},
		{"AUTH before TLS not offered", sub, []string{"--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", alicePW,
			"--from", "alice@example.test", "--to", "bob@example.test"}, "Host did not advertise authentication"},
		{"submission without AUTH", sub, []string{"--tls", "--from", "alice@example.test", "--to", "bob@example.test"}, "* 530 5.7.0"},
		{"wrong password", sub, []string{"--tls", "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "guess",
			"--from", "alice@example.test", "--to", "bob@example.test"}, "* 535 5.7.8"},
		{"sender not owned", sub, []string{"--tls", "--auth", "LOGIN", "--auth-user", "bob@example.test", "--auth-password", bobPW,
			"--from", "alice@example.test", "--to", "bob@example.test"}, "* 553 5.7.1"},
		{"no outbound queue", noQueue, []string{"--tls", "--auth", "PLAIN", "--auth-user", "bob@example.test", "--auth-password", bobPW,
			"--from", "bob@example.test", "--to", "friend@remote.example"}, "* 451 4.3.2 Outbound delivery not configured"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, code := swaks(t, tc.addr, tc.args...)
			if code == 0 || !strings.Contains(out, tc.want) {
				t.Fatalf("swaks exit %d, want failure with %q:\n%s", code, tc.want, out)
			}
		})
	}
	for _, u := range []string{"alice@example.test", "bob@example.test"} {
		if n := len(e.inbox(t, u)); n != 0 {
			t.Errorf("%s got %d messages from refused transactions", u, n)
		}
	}
	if q := e.queue.all(); len(q) != 0 {
		t.Errorf("queue got %d messages from refused transactions", len(q))
	}
}
