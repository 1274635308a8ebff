package dnsmem_test

import (
	"testing"

	"github.com/mailctl/mailctl/providers/dns"
	"github.com/mailctl/mailctl/providers/dns/dnsmem"
	"github.com/mailctl/mailctl/providers/dns/dnstest"
)

func TestSuite(t *testing.T) {
	t.Parallel()
	dnstest.Run(t, func(t *testing.T) (dns.Provider, string) {
		return dnsmem.New("example.org"), "example.org"
	})
}
