package dkim

import (
	"bufio"
	"bytes"
	"crypto"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"sync"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/mailctl/mailctl/server/auth"
)

// SignedHeaders are the header fields covered by outbound signatures
// (RFC 6376 section 5.4.1). From is listed twice so that a second From
// field added in transit breaks the signature (section 8.15); the others
// are signed whether present or not ("oversigning" of absent fields
// prevents their later addition).
var SignedHeaders = []string{
	"From", "From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "Sender", "List-Unsubscribe", "List-Unsubscribe-Post",
}

// Signer signs outbound messages with the keys of the domain in their From
// header. It is safe for concurrent use; SetKeys replaces the keys (config
// reload).
type Signer struct {
	mu   sync.RWMutex
	keys map[string][]Key // domain -> keys
}

// NewSigner returns a Signer holding keys (as returned by Ensure, for any
// number of domains).
func NewSigner(keys []Key) *Signer {
	s := &Signer{}
	s.SetKeys(keys)
	return s
}

// SetKeys replaces the signing keys: those of keys marked Signing (the
// others are only published).
func (s *Signer) SetKeys(keys []Key) {
	m := map[string][]Key{}
	for _, k := range keys {
		if !k.Signing {
			continue
		}
		d := strings.ToLower(k.Domain)
		m[d] = append(m[d], k)
	}
	s.mu.Lock()
	s.keys = m
	s.mu.Unlock()
}

// HasDomain reports whether the signer has keys for domain.
func (s *Signer) HasDomain(domain string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.keys[strings.ToLower(domain)]) > 0
}

// Sign reads a message and returns the DKIM-Signature header fields (one
// per key: ed25519 first, then rsa-sha256; each ends in CRLF) to prepend to
// it, signed for the domain of its From header with relaxed/relaxed
// canonicalization. It returns "" and no error when the From domain has no
// keys (mail forwarded for another domain is not signed).
func (s *Signer) Sign(r io.Reader) (string, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := peekHeader(br)
	if err != nil {
		return "", err
	}
	domain := fromDomain(head)
	s.mu.RLock()
	keys := s.keys[domain]
	s.mu.RUnlock()
	if len(keys) == 0 {
		io.Copy(io.Discard, br)
		return "", nil
	}
	signers := make([]*msgdkim.Signer, 0, len(keys))
	writers := make([]io.Writer, 0, len(keys))
	for _, k := range keys {
		ds, err := msgdkim.NewSigner(&msgdkim.SignOptions{
			Domain:                 domain,
			Selector:               k.Selector,
			Signer:                 k.Signer,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: msgdkim.CanonicalizationRelaxed,
			BodyCanonicalization:   msgdkim.CanonicalizationRelaxed,
			HeaderKeys:             SignedHeaders,
		})
		if err != nil {
			for _, o := range signers {
				o.Close()
			}
			return "", fmt.Errorf("dkim sign for %q with %q: %w", domain, k.Selector, err)
		}
		signers = append(signers, ds)
		writers = append(writers, ds)
	}
	_, err = io.Copy(io.MultiWriter(writers...), br)
	var out strings.Builder
	for i, ds := range signers {
		if cerr := ds.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("dkim sign for %q with %q: %w", domain, keys[i].Selector, cerr)
		}
		if err == nil {
			out.WriteString(ds.Signature())
		}
	}
	if err != nil {
		return "", fmt.Errorf("dkim sign: %w", err)
	}
	return out.String(), nil
}

// peekHeader returns the header section (up to 256 KiB) without consuming it.
func peekHeader(br *bufio.Reader) ([]byte, error) {
	for n := 4096; ; n *= 2 {
		if n > br.Size() {
			n = br.Size()
		}
		b, err := br.Peek(n)
		if i := bytes.Index(b, []byte("\n\r\n")); i >= 0 {
			return b[:i+1], nil
		}
		if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
			return b[:i+1], nil
		}
		if err != nil || n == br.Size() {
			if err == io.EOF || err == bufio.ErrBufferFull || err == nil {
				return b, nil
			}
			return nil, fmt.Errorf("dkim sign: read header: %w", err)
		}
	}
}

// fromDomain returns the lower-cased domain of the first address of the
// From header field, or "".
func fromDomain(head []byte) string {
	m, err := mail.ReadMessage(io.MultiReader(bytes.NewReader(head), strings.NewReader("\r\n")))
	if err != nil {
		return ""
	}
	list, err := m.Header.AddressList("From")
	if err != nil || len(list) == 0 {
		return ""
	}
	a := list[0].Address
	i := strings.LastIndexByte(a, '@')
	if i < 0 {
		return ""
	}
	d := strings.ToLower(a[i+1:])
	if !auth.IsASCII(d) {
		// U-labels in a UTF-8 header (RFC 6532): keys, DNS and d= hold
		// the A-labels (RFC 8616 section 4).
		ad, err := auth.ParseDomain(d)
		if err != nil {
			return ""
		}
		d = ad
	}
	return d
}
