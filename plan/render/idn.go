package render

import (
	"strings"

	"github.com/mailctl/mailctl/server/auth"
)

// display shows a resource address holding A-labels ("dns.xn--bcher-kva.
// example.MX") with U-labels, the address as written in parentheses:
// "dns.bücher.example.MX (dns.xn--bcher-kva.example.MX)". Other addresses
// are returned as they are.
func display(address string) string {
	if !strings.Contains(address, "xn--") {
		return address
	}
	labels := strings.Split(address, ".")
	for i, l := range labels {
		if strings.HasPrefix(strings.ToLower(l), "xn--") {
			labels[i] = auth.UnicodeDomain(l)
		}
	}
	u := strings.Join(labels, ".")
	if u == address {
		return address
	}
	return u + " (" + address + ")"
}
