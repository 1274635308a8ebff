package render

import "testing"

func TestDisplayIDN(t *testing.T) {
	for in, want := range map[string]string{
		"dns.example.org.MX":                   "dns.example.org.MX",
		"dns.xn--bcher-kva.example.MX":         "dns.bücher.example.MX (dns.xn--bcher-kva.example.MX)",
		"dns.xn--bcher-kva.example._dmarc.TXT": "dns.bücher.example._dmarc.TXT (dns.xn--bcher-kva.example._dmarc.TXT)",
		"dns.xn--zz.example.MX":                "dns.xn--zz.example.MX", // not a valid A-label: as is
		"server.mx1.config":                    "server.mx1.config",
	} {
		if got := display(in); got != want {
			t.Errorf("display(%q) = %q, want %q", in, got, want)
		}
	}
}
