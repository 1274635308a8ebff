package dkim_test

import (
	"bytes"
	"net"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/mailctl/mailctl/server/dkim"
)

// TestSignerInternationalFrom: a From header naming the domain in U-labels
// (RFC 6532) is signed with the domain's keys, d= in A-labels (RFC 8616),
// and the signature verifies against the keys published under A-labels.
func TestSignerInternationalFrom(t *testing.T) {
	t.Parallel()
	keys, err := dkim.Ensure(t.TempDir(), "xn--bcher-kva.example", []string{"mx1"})
	if err != nil {
		t.Fatal(err)
	}
	records := map[string]string{}
	for _, k := range keys {
		records[k.Selector+"._domainkey.xn--bcher-kva.example"] = k.Record
	}
	lookup := func(name string) ([]string, error) {
		if r, ok := records[name]; ok {
			return []string{r}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	msg := "From: Anna <anna@Bücher.example>\r\nTo: δοκιμή@παράδειγμα.δοκιμή\r\nSubject: Grüße\r\n\r\nHallo\r\n"
	sig, err := dkim.NewSigner(keys).Sign(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(sig, "DKIM-Signature:") != 2 || !strings.Contains(sig, "d=xn--bcher-kva.example;") {
		t.Fatalf("Sign = %q, want two signatures with d=xn--bcher-kva.example", sig)
	}
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader([]byte(sig+msg)), &msgdkim.VerifyOptions{LookupTXT: lookup})
	if err != nil || len(vs) != 2 {
		t.Fatalf("Verify = %v, %v", vs, err)
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("signature of %s: %v", v.Domain, v.Err)
		}
	}
}
