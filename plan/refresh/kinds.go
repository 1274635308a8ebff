package refresh

// Every DNS and reverse DNS provider kind mailctl ships registers itself.
import (
	_ "github.com/mailctl/mailctl/providers/dns/all"
	_ "github.com/mailctl/mailctl/providers/ptr/all"
)
