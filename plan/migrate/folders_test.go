package migrate

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	goimap "github.com/emersion/go-imap/v2"
)

func TestMapFolders(t *testing.T) {
	gmail := []*goimap.ListData{
		{Mailbox: "INBOX", Delim: '/'},
		{Mailbox: "[Gmail]", Delim: '/', Attrs: []goimap.MailboxAttr{goimap.MailboxAttrNoSelect}},
		{Mailbox: "[Gmail]/All Mail", Delim: '/', Attrs: []goimap.MailboxAttr{goimap.MailboxAttrAll}},
		{Mailbox: "[Gmail]/Sent Mail", Delim: '/', Attrs: []goimap.MailboxAttr{goimap.MailboxAttrSent}},
		{Mailbox: "[Gmail]/Drafts", Delim: '/'},
		{Mailbox: "[Gmail]/Spam", Delim: '/'},
		{Mailbox: "[Gmail]/Trash", Delim: '/', Attrs: []goimap.MailboxAttr{goimap.MailboxAttrTrash}},
		{Mailbox: "[Gmail]/Starred", Delim: '/', Attrs: []goimap.MailboxAttr{goimap.MailboxAttrFlagged}},
		{Mailbox: "[Gmail]/Important", Delim: '/'},
		{Mailbox: "Work/Clients/ACME", Delim: '/'},
		{Mailbox: "Work/Clients/ACME/2024", Delim: '/'},
		{Mailbox: "Reçus/Été 2025", Delim: '/'},
		{Mailbox: "Newsletters/Daily", Delim: '/'},
	}
	for _, tc := range []struct {
		name     string
		list     []*goimap.ListData
		delim    rune
		job      Job
		want     []string // source=>target, in processing order
		excluded []string
	}{
		{
			name:  "gmail defaults",
			list:  gmail,
			delim: '/',
			want: []string{"INBOX=>INBOX", "[Gmail]/Sent Mail=>Sent", "[Gmail]/Drafts=>Drafts", "Newsletters/Daily=>Newsletters/Daily",
				"Reçus/Été 2025=>Reçus/Été 2025", "Work/Clients/ACME=>Work/Clients/ACME", "Work/Clients/ACME/2024=>Work/Clients/ACME/2024",
				"[Gmail]/Spam=>Junk", "[Gmail]/Trash=>Trash", "[Gmail]/All Mail=>Archive"},
			excluded: []string{"[Gmail]/Important", "[Gmail]/Starred"},
		},
		{
			name:  "overrides and exclusions",
			list:  gmail,
			delim: '.',
			job: Job{Folders: map[string]string{"Work/Clients/ACME": "ACME", "[Gmail]/Starred": "Starred"},
				Exclude: []string{"Newsletters/*", "[Gmail]/Spam"}},
			want: []string{"INBOX=>INBOX", "[Gmail]/Sent Mail=>Sent", "[Gmail]/Drafts=>Drafts", "Reçus/Été 2025=>Reçus.Été 2025",
				"Work/Clients/ACME=>ACME", "Work/Clients/ACME/2024=>ACME/2024", "[Gmail]/Starred=>Starred", "[Gmail]/Trash=>Trash",
				"[Gmail]/All Mail=>Archive"},
			excluded: []string{"Newsletters/Daily", "[Gmail]/Important", "[Gmail]/Spam"},
		},
		{
			name:  "dot delimiter and Google Mail names",
			list:  []*goimap.ListData{{Mailbox: "INBOX", Delim: '.'}, {Mailbox: "[Google Mail].Gesendet", Delim: '.', Attrs: []goimap.MailboxAttr{goimap.MailboxAttrSent}}, {Mailbox: "a/b.c", Delim: '.'}},
			delim: '/',
			want:  []string{"INBOX=>INBOX", "[Google Mail].Gesendet=>Sent", "a/b.c=>a_b/c"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			folders, excluded := mapFolders(tc.list, tc.delim, &tc.job)
			var got []string
			for _, f := range folders {
				got = append(got, f.Source+"=>"+f.Target)
				if f.AllMail != (f.Target == TargetArchive) {
					t.Errorf("%s: AllMail = %v", f.Source, f.AllMail)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("mapFolders = %q, want %q", got, tc.want)
			}
			var ex []string
			for _, f := range []string{"Newsletters/Daily", "[Gmail]/Important", "[Gmail]/Spam", "[Gmail]/Starred"} {
				if excluded[f] != "" {
					ex = append(ex, f)
				}
			}
			if !reflect.DeepEqual(ex, tc.excluded) {
				t.Errorf("excluded = %v, want %v", excluded, tc.excluded)
			}
		})
	}
}

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&goimap.Error{Type: goimap.StatusResponseTypeNo, Code: "THROTTLED", Text: "slow down"}, true},
		{&goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeOverQuota}, true},
		{&goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeUnavailable}, true},
		{&goimap.Error{Type: goimap.StatusResponseTypeNo, Text: "[THROTTLED] Account exceeded command or bandwidth limits"}, true},
		{&goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeAuthenticationFailed}, false},
		{&goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeNonExistent}, false},
		{fmt.Errorf("fetch: %w", io.ErrUnexpectedEOF), true},
		{&permanentError{errors.New("bad CA file")}, false},
		// OVERQUOTA from the target is a full mailbox, not a bandwidth
		// limit; a refused certificate stays refused.
		{targetError(&goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeOverQuota}, "append"), false},
		{targetError(&goimap.Error{Type: goimap.StatusResponseTypeNo, Code: "THROTTLED"}, "append"), true},
		{tlsError(Endpoint{Address: "mx1.example.org:993"}, fmt.Errorf("TLS: %w", x509.UnknownAuthorityError{})), false},
		{tlsError(Endpoint{Address: "mx1.example.org:993"}, fmt.Errorf("TLS: %w", x509.HostnameError{Host: "mx1.example.org"})), false},
		{tlsError(Endpoint{Address: "mx1.example.org:993"}, io.ErrUnexpectedEOF), true},
	} {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestXOAUTH2(t *testing.T) {
	x := &xoauth2{user: "alice@example.org", token: "ya29.token"}
	mech, ir, err := x.Start()
	if err != nil || mech != "XOAUTH2" || string(ir) != "user=alice@example.org\x01auth=Bearer ya29.token\x01\x01" {
		t.Errorf("Start = %q, %q, %v", mech, ir, err)
	}
	resp, err := x.Next([]byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`))
	if err == nil || resp != nil || !strings.Contains(err.Error(), `refused the access token: {"status":"401"`) || strings.Contains(err.Error(), "ya29") {
		t.Errorf("Next(error challenge) = %q, %v; want no response and an error quoting the status, not the token", resp, err)
	}
}

func TestMessageID(t *testing.T) {
	for _, tc := range []struct{ hdr, want string }{
		{"Message-ID: <a@b>\r\n\r\n", "<a@b>"},
		{"message-id:\r\n <folded@b>\r\n\r\n", "<folded@b>"},
		{"\r\n", ""},
		{"", ""},
	} {
		if got := messageID([]byte(tc.hdr)); got != tc.want {
			t.Errorf("messageID(%q) = %q, want %q", tc.hdr, got, tc.want)
		}
	}
}
