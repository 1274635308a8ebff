// Package all registers every reverse DNS provider kind; import it for its
// side effect: import _ "github.com/mailctl/mailctl/providers/ptr/all".
package all

import (
	_ "github.com/mailctl/mailctl/providers/ptr/hetzner"
	_ "github.com/mailctl/mailctl/providers/ptr/ovh"
)
