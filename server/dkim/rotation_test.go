package dkim_test

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/mailctl/mailctl/server/dkim"
)

// validSignatures signs a message with the signing keys of keys and
// verifies it against the records of keys (the published DNS), returning
// the selectors of the valid signatures.
func validSignatures(t *testing.T, keys []dkim.Key) []string {
	t.Helper()
	records := map[string]string{}
	for _, k := range keys {
		records[k.Selector+"._domainkey."+k.Domain] = k.Record
	}
	msg := "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\nHello\r\n"
	sig, err := dkim.NewSigner(keys).Sign(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader([]byte(sig+msg)), &msgdkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if r, ok := records[name]; ok {
			return []string{r}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}})
	if err != nil {
		t.Fatal(err)
	}
	var sels []string
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("signature of %s: %v", v.Domain, v.Err)
			continue
		}
		sels = append(sels, v.Domain)
	}
	return sels
}

// states returns "selector=state" of each key.
func states(keys []dkim.Key) string {
	var out []string
	for _, k := range keys {
		s := k.Selector + "=" + k.State
		if k.Signing {
			s += "*"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestRotationLifecycle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bases := []string{"mx1"}
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	keys, err := dkim.DomainKeys(dir, "example.org", bases)
	if err != nil {
		t.Fatal(err)
	}
	if got := states(keys); got != "mx1-ed25519=signing* mx1-rsa=signing*" {
		t.Fatalf("before rotation: %s", got)
	}
	old := keys[0].Record

	if err := dkim.Rotate(dir, "example.org", bases, "mx1-r2", t0); err != nil {
		t.Fatal(err)
	}
	if err := dkim.Rotate(dir, "example.org", bases, "mx1-r2", t0); err != nil {
		t.Errorf("starting the same rotation again: %v", err)
	}
	if err := dkim.Rotate(dir, "example.org", bases, "mx1-r3", t0); err == nil || !strings.Contains(err.Error(), "under way") {
		t.Errorf("a second rotation while one is pending: %v", err)
	}
	keys, err = dkim.DomainKeys(dir, "example.org", bases)
	if err != nil {
		t.Fatal(err)
	}
	if got := states(keys); got != "mx1-ed25519=signing* mx1-rsa=signing* mx1-r2-ed25519=pending mx1-r2-rsa=pending" {
		t.Fatalf("during rotation: %s", got)
	}
	if keys[0].Record != old {
		t.Errorf("the signing key changed when the rotation started")
	}
	if !keys[2].Created.Equal(t0) {
		t.Errorf("pending key created %v, want %v", keys[2].Created, t0)
	}
	if n := len(validSignatures(t, keys)); n != 2 {
		t.Errorf("%d valid signatures during the rotation, want 2", n)
	}

	if err := dkim.Remove(dir, "example.org", bases, "mx1", t0); err == nil {
		t.Errorf("removing the signing selector succeeded")
	}
	t1 := t0.Add(time.Hour)
	if err := dkim.Activate(dir, "example.org", bases, "mx1-r2", t1); err != nil {
		t.Fatal(err)
	}
	if err := dkim.Activate(dir, "example.org", bases, "mx1-r2", t1.Add(time.Hour)); err != nil {
		t.Errorf("activating again: %v", err)
	}
	keys, err = dkim.DomainKeys(dir, "example.org", bases)
	if err != nil {
		t.Fatal(err)
	}
	if got := states(keys); got != "mx1-r2-ed25519=signing* mx1-r2-rsa=signing* mx1-ed25519=retired mx1-rsa=retired" {
		t.Fatalf("after the switch: %s", got)
	}
	if !keys[2].Retired.Equal(t1) {
		t.Errorf("retired at %v, want %v", keys[2].Retired, t1)
	}
	if n := len(validSignatures(t, keys)); n != 2 {
		t.Errorf("%d valid signatures after the switch, want 2", n)
	}

	if err := dkim.Remove(dir, "example.org", bases, "mx1", t1); err != nil {
		t.Fatal(err)
	}
	if err := dkim.Remove(dir, "example.org", bases, "mx1", t1); err != nil {
		t.Errorf("removing again: %v", err)
	}
	keys, err = dkim.DomainKeys(dir, "example.org", bases)
	if err != nil {
		t.Fatal(err)
	}
	if got := states(keys); got != "mx1-r2-ed25519=signing* mx1-r2-rsa=signing*" {
		t.Fatalf("after removal: %s", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "example.org", "mx1-ed25519.pem")); !os.IsNotExist(err) {
		t.Errorf("the removed key file is still there: %v", err)
	}

	for _, bad := range []string{"../x", ".hidden", "a b", strings.Repeat("a", 60), ""} {
		if err := dkim.Rotate(dir, "example.org", bases, bad, t1); err == nil {
			t.Errorf("rotating to %q succeeded", bad)
		}
	}

	// A second rotation from the same configuration.
	if err := dkim.Rotate(dir, "example.org", bases, "mx1", t1); err == nil {
		t.Errorf("rotating to a selector used before succeeded")
	}
	if err := dkim.Rotate(dir, "example.org", bases, "mx1-r3", t1); err != nil {
		t.Fatal(err)
	}

	// A configuration naming another signing selector starts over.
	keys, err = dkim.DomainKeys(dir, "example.org", []string{"new"})
	if err != nil {
		t.Fatal(err)
	}
	if got := states(keys); got != "new-ed25519=signing* new-rsa=signing*" {
		t.Errorf("after a manual selector change: %s", got)
	}
}

func TestRotationKeepsConfiguredPrevious(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bases := []string{"b", "a"}
	now := time.Now()
	if err := dkim.Rotate(dir, "example.org", bases, "c", now); err != nil {
		t.Fatal(err)
	}
	if err := dkim.Activate(dir, "example.org", bases, "c", now); err != nil {
		t.Fatal(err)
	}
	keys, err := dkim.DomainKeys(dir, "example.org", bases)
	if err != nil {
		t.Fatal(err)
	}
	if got := states(keys); got != "c-ed25519=signing* c-rsa=signing* b-ed25519=retired b-rsa=retired a-ed25519=published a-rsa=published" {
		t.Errorf("keys: %s", got)
	}
	if err := dkim.Activate(dir, "example.org", bases, "a", now); err == nil {
		t.Errorf("activating a configured previous selector succeeded")
	}
}
