// Package all registers every DNS provider kind; import it for its side
// effect: import _ "github.com/mailctl/mailctl/providers/dns/all".
package all

import (
	_ "github.com/mailctl/mailctl/providers/dns/cloudflare"
	_ "github.com/mailctl/mailctl/providers/dns/ovh"
	_ "github.com/mailctl/mailctl/providers/dns/rfc2136"
	_ "github.com/mailctl/mailctl/providers/dns/zonefile"
)
