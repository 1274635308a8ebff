package refresh

// The DNS provider kinds mailctl ships; each registers itself.
import (
	_ "github.com/mailctl/mailctl/providers/dns/cloudflare"
	_ "github.com/mailctl/mailctl/providers/dns/rfc2136"
	_ "github.com/mailctl/mailctl/providers/dns/zonefile"
)
