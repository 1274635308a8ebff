package daemon_test

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailctl/mailctl/server/config"
)

const aliceSieve = `require ["fileinto", "imap4flags", "vacation", "reject", "envelope", "subaddress"];
if envelope :detail "to" "lists" {
  fileinto "Reports";
  addflag "$Lists";
  stop;
}
if header :contains "subject" "report" {
  fileinto :flags "\\Flagged" "Reports";
  stop;
}
if header :contains "subject" "reject-me" {
  reject "go away";
  stop;
}
vacation :days 7 :subject "Away" "I am away until Monday.";
`

// TestSieveDelivery runs the real binary with a user's Sieve script: mail
// in over SMTP (swaks on 25, net/smtp on 587), out over IMAP.
func TestSieveDelivery(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks is required (apt-get install swaks)")
	}
	dataDir := t.TempDir()
	cfgPath := filepath.Join(t.TempDir(), "server.json")
	cfg := baseConfig(t, dataDir)
	cfg.Control = filepath.Join(t.TempDir(), "control.sock")
	cfg.Domains[0].DKIMSelectors = []string{"s1"} // the vacation reply is signed
	cfg.Users = []config.User{
		{Address: "alice@example.test", PasswordHash: hash(t, "alice-pw"), Sieve: aliceSieve},
		{Address: "bob@example.test", PasswordHash: hash(t, "bob-pw")},
		{Address: "carol@example.test", PasswordHash: hash(t, "carol-pw")},
	}
	writeConfig(t, cfgPath, cfg)
	srv := startServer(t, cfgPath)
	pool := roots(t, dataDir)

	fetch := func(user, pw, mailbox string) ([][]byte, [][]goimap.Flag) {
		t.Helper()
		c := dialIMAPS(t, srv.addr("imaps"), pool, nil)
		if err := c.Login(user, pw).Wait(); err != nil {
			t.Fatalf("login %s: %v", user, err)
		}
		defer func() { c.Logout().Wait() }()
		sel, err := c.Select(mailbox, nil).Wait()
		if err != nil {
			t.Fatalf("select %s: %v", mailbox, err)
		}
		if sel.NumMessages == 0 {
			return nil, nil
		}
		msgs, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{
			Flags: true, BodySection: []*goimap.FetchItemBodySection{{Peek: true}},
		}).Collect()
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		var bodies [][]byte
		var flags [][]goimap.Flag
		for _, m := range msgs {
			bodies = append(bodies, m.BodySection[0].Bytes)
			flags = append(flags, m.Flags)
		}
		return bodies, flags
	}
	// waitFor polls mailbox until it has n messages.
	waitFor := func(user, pw, mailbox string, n int) [][]byte {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			b, _ := fetch(user, pw, mailbox)
			if len(b) >= n || time.Now().After(deadline) {
				return b
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	t.Run("fileinto with a flag", func(t *testing.T) {
		c := dialIMAPS(t, srv.addr("imaps"), pool, nil)
		if err := c.Login("alice@example.test", "alice-pw").Wait(); err != nil {
			t.Fatal(err)
		}
		if err := c.Create("Reports", nil).Wait(); err != nil {
			t.Fatalf("create Reports: %v", err)
		}
		c.Logout().Wait()
		out, err := swaks(t, "--server", srv.addr("smtp"), "--from", "someone@elsewhere.test",
			"--to", "alice@example.test", "--header", "Subject: weekly report", "--body", "token-report")
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		bodies, flags := fetch("alice@example.test", "alice-pw", "Reports")
		if len(bodies) != 1 || !bytes.Contains(bodies[0], []byte("token-report")) {
			t.Fatalf("Reports holds %d messages, want the report", len(bodies))
		}
		if !slices.Contains(flags[0], goimap.FlagFlagged) {
			t.Errorf("flags = %v, want \\Flagged", flags[0])
		}
		if inbox, _ := fetch("alice@example.test", "alice-pw", "INBOX"); len(inbox) != 0 {
			t.Errorf("INBOX holds %d messages, want none (filed away)", len(inbox))
		}
	})

	t.Run("subaddress of the envelope recipient", func(t *testing.T) {
		out, err := swaks(t, "--server", srv.addr("smtp"), "--from", "someone@elsewhere.test",
			"--to", "alice+lists@example.test", "--header", "Subject: digest", "--body", "token-plus")
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		bodies, _ := fetch("alice@example.test", "alice-pw", "Reports")
		if len(bodies) != 2 || !bytes.Contains(bodies[1], []byte("token-plus")) {
			t.Fatalf("Reports holds %d messages, want the +lists one too", len(bodies))
		}
	})

	t.Run("reject at DATA", func(t *testing.T) {
		out, err := swaks(t, "--server", srv.addr("smtp"), "--from", "someone@elsewhere.test",
			"--to", "alice@example.test", "--header", "Subject: reject-me", "--body", "token-rejected")
		if err == nil || !strings.Contains(out, "550 5.7.1 Rejected by the recipient: go away") {
			t.Fatalf("swaks: err %v, want a 550 with the reason:\n%s", err, out)
		}
		if inbox, _ := fetch("alice@example.test", "alice-pw", "INBOX"); len(inbox) != 0 {
			t.Errorf("INBOX holds %d messages after a reject", len(inbox))
		}
	})

	t.Run("vacation", func(t *testing.T) {
		send := func(user, pw, subject string, extra ...string) {
			t.Helper()
			args := []string{"--server", srv.addr("submission"), "--tls", "--auth", "PLAIN",
				"--auth-user", user, "--auth-password", pw, "--from", user, "--to", "alice@example.test",
				"--header", "Subject: " + subject, "--body", "hello"}
			for _, h := range extra {
				args = append(args, "--header", h)
			}
			if out, err := swaks(t, args...); err != nil {
				t.Fatalf("swaks: %v\n%s", err, out)
			}
		}
		send("bob@example.test", "bob-pw", "first")
		replies := waitFor("bob@example.test", "bob-pw", "INBOX", 1)
		if len(replies) != 1 {
			t.Fatalf("bob got %d replies, want 1", len(replies))
		}
		r := replies[0]
		for _, want := range []string{"From: alice@example.test", "To: bob@example.test", "Subject: Away",
			"Auto-Submitted: auto-replied", "In-Reply-To: <", "I am away until Monday.", "DKIM-Signature: ", "d=example.test"} {
			if !bytes.Contains(r, []byte(want)) {
				t.Errorf("reply lacks %q:\n%s", want, r)
			}
		}
		// Within :days: no second reply to bob; never one to a list.
		send("bob@example.test", "bob-pw", "second")
		send("carol@example.test", "carol-pw", "list mail", "List-Id: <team.example.test>")
		send("carol@example.test", "carol-pw", "direct", "Message-Id: <carol-direct@example.test>")
		carol := waitFor("carol@example.test", "carol-pw", "INBOX", 1)
		if len(carol) != 1 {
			t.Fatalf("carol got %d replies, want 1 (to her direct message)", len(carol))
		}
		if !bytes.Contains(carol[0], []byte("In-Reply-To: <carol-direct@example.test>")) {
			t.Errorf("carol's reply is not to her direct message:\n%s", carol[0])
		}
		time.Sleep(time.Second)
		if got, _ := fetch("bob@example.test", "bob-pw", "INBOX"); len(got) != 1 {
			t.Errorf("bob got %d replies, want 1 within :days", len(got))
		}
		if got, _ := fetch("carol@example.test", "carol-pw", "INBOX"); len(got) != 1 {
			t.Errorf("carol got %d replies, want 1 (none to the List-Id message)", len(got))
		}
		if inbox, _ := fetch("alice@example.test", "alice-pw", "INBOX"); len(inbox) != 4 {
			t.Errorf("alice's INBOX holds %d messages, want the 4 sent", len(inbox))
		}
	})

	t.Run("reload changes the script", func(t *testing.T) {
		cfg.Users[0].Sieve = `require "fileinto"; if header :contains "subject" "report" { fileinto "No/Such/Folder"; }`
		writeConfig(t, cfgPath, cfg)
		srv.signal(syscall.SIGHUP)
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := exec.Command(mailctlBin, "serve", "status", "-json", "-config", cfgPath).CombinedOutput()
			if err == nil && bytes.Contains(out, []byte(config.SieveDigest(cfg.Users[0].Sieve))) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("status never showed the new script's digest: %v\n%s", err, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// No such mailbox: fileinto fails and the message is kept (RFC 5228 4.1).
		out, err := swaks(t, "--server", srv.addr("smtp"), "--from", "someone@elsewhere.test",
			"--to", "alice@example.test", "--header", "Subject: another report", "--body", "token-report-2")
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		inbox, _ := fetch("alice@example.test", "alice-pw", "INBOX")
		if len(inbox) != 5 || !bytes.Contains(inbox[4], []byte("token-report-2")) {
			t.Errorf("INBOX holds %d messages, want the report kept there", len(inbox))
		}
		if reports, _ := fetch("alice@example.test", "alice-pw", "Reports"); len(reports) != 2 {
			t.Errorf("Reports holds %d messages, want only the two of the old script", len(reports))
		}
	})
}
