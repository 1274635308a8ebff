package all_test

import (
	"slices"
	"testing"

	"github.com/mailctl/mailctl/providers/ptr"
	_ "github.com/mailctl/mailctl/providers/ptr/all"
)

func TestKinds(t *testing.T) {
	if got, want := ptr.Kinds(), []string{"hetzner", "ovh"}; !slices.Equal(got, want) {
		t.Fatalf("Kinds() = %v, want %v", got, want)
	}
	for _, name := range ptr.Kinds() {
		k, _ := ptr.Lookup(name)
		for _, a := range k.Attributes {
			if a.Doc == "" {
				t.Errorf("kind %s: attribute %s has no Doc", name, a.Name)
			}
		}
	}
}
