package dkim_test

import (
	"bytes"
	"crypto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/mailctl/mailctl/server/dkim"
)

func TestEnsureGeneratesOnceAndSigns(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keys, err := dkim.Ensure(dir, "Example.org", []string{"mx1-2026"})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Selector != "mx1-2026-ed25519" || keys[1].Selector != "mx1-2026-rsa" {
		t.Fatalf("keys = %+v", keys)
	}
	if !strings.HasPrefix(keys[0].Record, "v=DKIM1; k=ed25519; p=") || !strings.HasPrefix(keys[1].Record, "v=DKIM1; k=rsa; p=MII") {
		t.Errorf("records = %q, %q", keys[0].Record, keys[1].Record)
	}
	for _, k := range keys {
		fi, err := os.Stat(filepath.Join(dir, "example.org", k.Selector+".pem"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key file %s: %v, mode %v; want 0600", k.Selector, err, fi.Mode())
		}
	}
	again, err := dkim.Ensure(dir, "example.org", []string{"mx1-2026"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if again[i].Record != keys[i].Record {
			t.Errorf("second Ensure changed key %s", keys[i].Selector)
		}
	}

	// Sign with each key and verify against its own record through a
	// lookup that serves the published TXT.
	for _, k := range keys {
		msg := "From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n"
		var signed bytes.Buffer
		opts := &msgdkim.SignOptions{Domain: "example.org", Selector: k.Selector, Signer: k.Signer,
			HeaderKeys: []string{"From", "From", "To", "Subject", "Date"}, Hash: crypto.SHA256}
		if err := msgdkim.Sign(&signed, strings.NewReader(msg), opts); err != nil {
			t.Fatalf("sign with %s: %v", k.Selector, err)
		}
		rec := k.Record
		vs, err := msgdkim.VerifyWithOptions(&signed, &msgdkim.VerifyOptions{
			LookupTXT: func(domain string) ([]string, error) { return []string{rec}, nil },
		})
		if err != nil || len(vs) != 1 || vs[0].Err != nil {
			t.Errorf("verify %s: %v %+v", k.Selector, err, vs)
		}
	}
}

func TestEnsureRejectsPaths(t *testing.T) {
	t.Parallel()
	if _, err := dkim.Ensure(t.TempDir(), "../etc", []string{"x"}); err == nil {
		t.Errorf("domain with a path accepted")
	}
	if _, err := dkim.Ensure(t.TempDir(), "example.org", []string{"../x"}); err == nil {
		t.Errorf("selector with a path accepted")
	}
}

// TestRotation: with two configured selectors, both are published (Ensure
// returns their records) but only the first one signs.
func TestRotation(t *testing.T) {
	t.Parallel()
	keys, err := dkim.Ensure(t.TempDir(), "example.org", []string{"mx1-2027", "mx1-2026"})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 {
		t.Fatalf("%d keys, want 4", len(keys))
	}
	s := dkim.NewSigner(keys)
	msg := "From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n"
	hdr, err := s.Sign(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(hdr, "s=mx1-2027-ed25519") || !strings.Contains(hdr, "s=mx1-2027-rsa") || strings.Contains(hdr, "s=mx1-2026") {
		t.Errorf("signatures = %q, want only the mx1-2027 selectors", hdr)
	}
}
