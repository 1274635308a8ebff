package all_test

import (
	"slices"
	"testing"

	"github.com/mailctl/mailctl/providers/dns"
	_ "github.com/mailctl/mailctl/providers/dns/all"
)

func TestEveryKindRegistered(t *testing.T) {
	want := []string{"cloudflare", "ovh", "rfc2136", "zonefile"}
	if got := dns.Kinds(); !slices.Equal(got, want) {
		t.Fatalf("Kinds() = %v, want %v", got, want)
	}
	for _, name := range want {
		k, _ := dns.Lookup(name)
		if !k.Capabilities.DNS || len(k.Attributes) == 0 {
			t.Errorf("kind %s: capabilities %+v, %d attributes", name, k.Capabilities, len(k.Attributes))
		}
		for _, a := range k.Attributes {
			if a.Doc == "" {
				t.Errorf("kind %s attribute %s has no doc", name, a.Name)
			}
		}
	}
}
