package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/internal/atomicfile"
)

// The self-signed certificate files under the data directory are
// contract.SelfSignedCert and SelfSignedKey: the provisioner reads the
// certificate to trust it.
const (
	// selfSignedLifetime is how long a generated certificate is valid; it
	// is regenerated when less than selfSignedRenew remains.
	selfSignedLifetime = 2 * 365 * 24 * time.Hour
	selfSignedRenew    = 30 * 24 * time.Hour
)

// loadSelfSigned loads the persisted self-signed certificate, or generates
// and persists a new one when there is none, when it does not cover names,
// or when it is about to expire.
func (s *Source) loadSelfSigned(names []string) error {
	certPath, keyPath := contract.SelfSignedCert(s.opts.DataDir), contract.SelfSignedKey(s.opts.DataDir)
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	switch {
	case err == nil:
		if c.Leaf == nil {
			c.Leaf, err = x509.ParseCertificate(c.Certificate[0])
		}
		if err == nil && covers(c.Leaf, names) && time.Until(c.Leaf.NotAfter) > selfSignedRenew {
			s.current.Store(&c)
			s.logger.Info("tls certificate is self-signed", "mode", ModeSelfSigned, "file", certPath,
				"names", c.Leaf.DNSNames, "not_after", c.Leaf.NotAfter)
			return nil
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		s.logger.Warn("self-signed certificate unreadable; generating a new one", "file", certPath, "err", err)
	}
	certPEM, keyPEM, err := GenerateSelfSigned(names, time.Now())
	if err != nil {
		return err
	}
	dir := filepath.Dir(certPath)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %q: %w", dir, err)
	}
	if err := atomicfile.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(certPath, certPEM, 0o644); err != nil {
		return err
	}
	c, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("load generated certificate: %w", err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return fmt.Errorf("parse generated certificate: %w", err)
		}
	}
	s.current.Store(&c)
	s.logger.Warn("tls certificate is self-signed (generated); clients will not trust it", "mode", ModeSelfSigned,
		"file", certPath, "names", names, "not_after", c.Leaf.NotAfter)
	return nil
}

// covers reports whether leaf is valid for every name.
func covers(leaf *x509.Certificate, names []string) bool {
	for _, n := range names {
		if !slices.Contains(leaf.DNSNames, n) {
			return false
		}
	}
	return true
}

// GenerateSelfSigned returns a PEM certificate and PKCS#8 key, ECDSA P-256,
// valid for names (the first is the subject) from now on.
func GenerateSelfSigned(names []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	if len(names) == 0 {
		return nil, nil, errors.New("self-signed certificate needs at least one name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("generate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0], Organization: []string{"mailctl self-signed"}},
		DNSNames:              slices.Clone(names),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // lets clients pin it as their own root
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), nil
}
