package contract

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"
)

// DKIMAlgorithm is the algorithm of a DKIM key.
type DKIMAlgorithm string

// The algorithms every configured selector gets a key of.
const (
	DKIMEd25519 DKIMAlgorithm = "ed25519" // RFC 8463
	DKIMRSA     DKIMAlgorithm = "rsa"     // rsa-2048
)

// The states of a DKIM selector in a rotation (DKIMKey.State), as the
// server keeps them and the provisioner plans from them.
const (
	DKIMStatePending   = "pending"   // new, to publish before it signs
	DKIMStateSigning   = "signing"   // signs outbound mail (one per domain)
	DKIMStateRetired   = "retired"   // published only, no longer signing
	DKIMStateRemoved   = "removed"   // unpublished; its key files deleted
	DKIMStatePublished = "published" // a configured previous selector
)

// DKIMSelector is one published selector of a configured base selector.
type DKIMSelector struct {
	Name      string // e.g. mx1-2026-ed25519
	Algorithm DKIMAlgorithm
}

// DKIMSelectors returns the selectors the server generates keys for, and
// the provisioner publishes, for a configured base selector:
// "<base>-ed25519" and "<base>-rsa". Verifiers without ed25519 support
// still find a valid RSA signature.
func DKIMSelectors(base string) []DKIMSelector {
	return []DKIMSelector{{base + "-ed25519", DKIMEd25519}, {base + "-rsa", DKIMRSA}}
}

// DKIMBase returns the base selector of a published selector name
// ("mx1-2026-ed25519" -> "mx1-2026"), the name itself when it has no
// algorithm suffix (a configured previous selector).
func DKIMBase(selector string) string {
	for _, alg := range []DKIMAlgorithm{DKIMEd25519, DKIMRSA} {
		if b, ok := strings.CutSuffix(selector, "-"+string(alg)); ok {
			return b
		}
	}
	return selector
}

// DKIMRecord returns the DKIM TXT record of a public key (RFC 6376
// section 3.6.1): "v=DKIM1; k=ed25519; p=<base64>" or "v=DKIM1; k=rsa;
// p=<base64 of the DER SubjectPublicKeyInfo>".
func DKIMRecord(pub crypto.PublicKey) (string, error) {
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("encode rsa public key: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	}
	return "", fmt.Errorf("unsupported public key %T", pub)
}
