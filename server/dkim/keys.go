// Package dkim manages the server's DKIM keys (RFC 6376): for each domain
// and configured selector, one ed25519 key (RFC 8463) and one rsa-2048 key,
// generated on the server on first start, kept under the data directory and
// never sent anywhere; only their public records leave the server (through
// `mailctl serve status`), for the provisioner to publish in DNS. A
// rotation (rotation.go) adds a selector, switches signing to it once the
// provisioner has published it, and later deletes the old one.
package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailctl/mailctl/contract"
)

// The selectors and the record format are the contract between server and
// provisioner (package contract); these names keep the server's code short.
type (
	Algorithm = contract.DKIMAlgorithm
	Selector  = contract.DKIMSelector
)

// The algorithms every configured selector gets.
const (
	Ed25519 = contract.DKIMEd25519
	RSA     = contract.DKIMRSA
)

// RSABits is the size of generated RSA keys.
const RSABits = 2048

// Selectors returns the selectors published for a configured base
// selector (contract.DKIMSelectors).
func Selectors(base string) []Selector { return contract.DKIMSelectors(base) }

// Key is a domain's signing key for one selector.
type Key struct {
	Domain    string    `json:"domain"`
	Selector  string    `json:"selector"`
	Algorithm Algorithm `json:"algorithm"`
	// Record is the public TXT record: "v=DKIM1; k=...; p=...".
	Record string `json:"record"`
	// Signing is true for the keys that sign: those of the first
	// configured selector, or of the selector a rotation switched to
	// (rotation.go). The others are only published (a rotation keeps the
	// old key in DNS until mail signed with it has been read).
	Signing bool `json:"signing"`
	// State is the selector's place in a rotation (StateSigning,
	// StatePending, StateRetired, or StatePublished for a configured
	// previous selector).
	State string `json:"state"`
	// Created is when the key was generated; Retired when it stopped
	// signing (zero unless retired).
	Created time.Time     `json:"created"`
	Retired time.Time     `json:"retired,omitzero"`
	Signer  crypto.Signer `json:"-"`
}

// Ensure loads the keys of domain for each base selector from dir
// (dir/<domain>/<selector>.pem), generating and saving (0600) the missing
// ones. It never overwrites an existing key. The keys of the first base
// selector are the signing ones.
func Ensure(dir, domain string, bases []string) ([]Key, error) {
	domain = strings.ToLower(domain)
	var keys []Key
	for i, base := range bases {
		ks, err := ensureBase(dir, domain, base)
		if err != nil {
			return nil, err
		}
		for j := range ks {
			ks[j].Signing, ks[j].State = i == 0, StatePublished
			if i == 0 {
				ks[j].State = StateSigning
			}
		}
		keys = append(keys, ks...)
	}
	return keys, nil
}

// ensureBase loads, or generates and saves, the keys of one base selector
// of domain. Created is the key file's modification time.
func ensureBase(dir, domain, base string) ([]Key, error) {
	if domain == "" || strings.ContainsAny(domain, "/\\") || strings.HasPrefix(domain, ".") {
		return nil, fmt.Errorf("dkim: invalid domain %q", domain)
	}
	ddir := filepath.Join(dir, domain)
	if err := os.MkdirAll(ddir, 0o700); err != nil {
		return nil, fmt.Errorf("create dkim key dir %q: %w", ddir, err)
	}
	var keys []Key
	for _, sel := range Selectors(base) {
		if strings.ContainsAny(sel.Name, "/\\") || strings.HasPrefix(sel.Name, ".") {
			return nil, fmt.Errorf("dkim: invalid selector %q", sel.Name)
		}
		path := filepath.Join(ddir, sel.Name+".pem")
		signer, err := load(path)
		if errors.Is(err, os.ErrNotExist) {
			signer, err = generate(path, sel.Algorithm)
		}
		if err != nil {
			return nil, err
		}
		rec, err := Record(signer)
		if err != nil {
			return nil, fmt.Errorf("dkim key %q: %w", path, err)
		}
		k := Key{Domain: domain, Selector: sel.Name, Algorithm: sel.Algorithm, Record: rec, Signer: signer}
		if fi, err := os.Stat(path); err == nil {
			k.Created = fi.ModTime().UTC().Truncate(time.Second)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func load(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("read dkim key %q: not a PKCS#8 PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("read dkim key %q: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("read dkim key %q: unsupported key type %T", path, k)
	}
	return s, nil
}

func generate(path string, alg Algorithm) (crypto.Signer, error) {
	var signer crypto.Signer
	var err error
	switch alg {
	case Ed25519:
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	case RSA:
		signer, err = rsa.GenerateKey(rand.Reader, RSABits)
	default:
		return nil, fmt.Errorf("dkim: unknown algorithm %q", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s dkim key: %w", alg, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return nil, fmt.Errorf("encode dkim key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("save dkim key %q: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("save dkim key %q: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("save dkim key %q: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("save dkim key %q: %w", path, err)
	}
	// Link, not rename: never replace a key another process just wrote.
	if err := os.Link(tmp, path); err != nil {
		os.Remove(tmp)
		if errors.Is(err, os.ErrExist) {
			return load(path)
		}
		return nil, fmt.Errorf("save dkim key %q: %w", path, err)
	}
	os.Remove(tmp)
	return signer, nil
}

// Record returns the DKIM TXT record of a signer's public key
// (contract.DKIMRecord).
func Record(s crypto.Signer) (string, error) { return contract.DKIMRecord(s.Public()) }
