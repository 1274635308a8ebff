package dkim_test

import (
	"bytes"
	"net"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/dkim"
)

func TestSignerSignsWithBothKeys(t *testing.T) {
	t.Parallel()
	keys, err := dkim.Ensure(t.TempDir(), "example.org", []string{"mx1"})
	if err != nil {
		t.Fatal(err)
	}
	s := dkim.NewSigner(keys)
	records := map[string]string{}
	for _, k := range keys {
		records[k.Selector+"._domainkey.example.org"] = k.Record
	}
	lookup := func(name string) ([]string, error) {
		if r, ok := records[name]; ok {
			return []string{r}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	tests := []struct {
		name, msg string
		signed    bool
	}{
		{"own domain", "From: Alice <alice@Example.org>\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\nHello\r\n", true},
		{"bare LF", "From: alice@example.org\nSubject: hi\n\nHello\n", true},
		{"other domain", "From: carol@example.net\r\n\r\nHello\r\n", false},
		{"no From", "Subject: x\r\n\r\nHello\r\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := s.Sign(strings.NewReader(tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.signed {
				if sig != "" {
					t.Fatalf("Sign = %q, want no signature", sig)
				}
				return
			}
			if n := strings.Count(sig, "DKIM-Signature:"); n != 2 {
				t.Fatalf("Sign = %q, want 2 signatures", sig)
			}
			if !strings.Contains(sig, "a=ed25519-sha256") || !strings.Contains(sig, "a=rsa-sha256") {
				t.Errorf("signatures %q lack an algorithm", sig)
			}
			msg := sig + strings.ReplaceAll(strings.ReplaceAll(tc.msg, "\r\n", "\n"), "\n", "\r\n")
			vs, err := msgdkim.VerifyWithOptions(bytes.NewReader([]byte(msg)), &msgdkim.VerifyOptions{LookupTXT: lookup})
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) != 2 {
				t.Fatalf("verifications = %d, want 2", len(vs))
			}
			for _, v := range vs {
				if v.Err != nil || v.Domain != "example.org" {
					t.Errorf("verification %+v: %v", v, v.Err)
				}
				from := 0
				for _, h := range v.HeaderKeys {
					if strings.EqualFold(h, "from") {
						from++
					}
				}
				if from != 2 {
					t.Errorf("h= %v lists From %d times, want 2", v.HeaderKeys, from)
				}
			}
			// A second From added later breaks both signatures.
			forged := sig + "From: mallory@example.org\r\n" + tc.msg
			vs, _ = msgdkim.VerifyWithOptions(strings.NewReader(forged), &msgdkim.VerifyOptions{LookupTXT: lookup})
			for _, v := range vs {
				if v.Err == nil {
					t.Errorf("signature still valid after adding a From field")
				}
			}
		})
	}
}

func TestKeysFromConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := &config.Config{DataDir: dir, Domains: []config.Domain{
		{Name: "example.org", DKIMSelectors: []string{"mx1"}}, {Name: "example.net"}}}
	keys, err := dkim.KeysFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Domain != "example.org" || keys[0].Selector != "mx1-ed25519" {
		t.Fatalf("keys = %+v", keys)
	}
	again, err := dkim.KeysFromConfig(cfg)
	if err != nil || again[1].Record != keys[1].Record {
		t.Errorf("second call generated new keys: %v", err)
	}
}
