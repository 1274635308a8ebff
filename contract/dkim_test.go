package contract_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/contract"
)

func TestDKIMSelectors(t *testing.T) {
	got := contract.DKIMSelectors("mx1-2026")
	if len(got) != 2 || got[0] != (contract.DKIMSelector{Name: "mx1-2026-ed25519", Algorithm: contract.DKIMEd25519}) ||
		got[1] != (contract.DKIMSelector{Name: "mx1-2026-rsa", Algorithm: contract.DKIMRSA}) {
		t.Errorf("DKIMSelectors = %+v", got)
	}
}

func TestDKIMRecord(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := contract.DKIMRecord(pub)
	if err != nil {
		t.Fatal(err)
	}
	b64, ok := strings.CutPrefix(rec, "v=DKIM1; k=ed25519; p=")
	if raw, err := base64.StdEncoding.DecodeString(b64); !ok || err != nil || !ed25519.PublicKey(raw).Equal(pub) {
		t.Errorf("DKIMRecord = %q, want the ed25519 key in base64", rec)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := contract.DKIMRecord(ec.Public()); err == nil {
		t.Error("DKIMRecord of an ECDSA key: no error")
	}
}
