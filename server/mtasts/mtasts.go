// Package mtasts builds the MTA-STS policy (RFC 8461) that the server serves
// at https://mta-sts.<domain>/.well-known/mta-sts.txt and whose id the
// provisioner publishes in the _mta-sts TXT record. Both sides call Policy,
// so the id always matches the served text.
//
// Parse reads a policy: leniently for the server's outbound queue, which
// applies other domains' policies, strictly for mailctl verify, which
// judges the policy mailctl's server serves.
package mtasts

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// DefaultMaxAge is one week, in seconds.
const DefaultMaxAge = 604800

// Policy returns the policy text for mode (testing, enforce, none), the MX
// host names and max_age in seconds (0 = DefaultMaxAge), and its id: the
// first 20 hex digits of the text's SHA-256 (RFC 8461 section 3.1 allows
// up to 32 alphanumerics).
func Policy(mode string, mx []string, maxAge int) (text, id string) {
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	var b strings.Builder
	b.WriteString("version: STSv1\r\n")
	fmt.Fprintf(&b, "mode: %s\r\n", mode)
	for _, h := range mx {
		fmt.Fprintf(&b, "mx: %s\r\n", strings.TrimSuffix(strings.ToLower(h), "."))
	}
	fmt.Fprintf(&b, "max_age: %d\r\n", maxAge)
	text = b.String()
	sum := sha256.Sum256([]byte(text))
	return text, hex.EncodeToString(sum[:])[:20]
}
