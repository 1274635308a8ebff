package config

import (
	"fmt"

	"github.com/mailctl/mailctl/server/auth"
)

// validateMTASTSMX checks the mta_sts_mx list of domain d (at field): host
// names, each once, only with an mta_sts_mode, and including this server's
// hostname, which a policy without it would make enforcing senders refuse.
func (c *Config) validateMTASTSMX(p *problems, field string, d Domain) {
	if len(d.MTASTSMX) == 0 {
		return
	}
	if d.MTASTSMode == "" {
		p.add(field+".mta_sts_mx", "is set but mta_sts_mode is not: no policy is served")
	}
	self, selfErr := auth.ParseDomain(c.Hostname)
	seen := map[string]bool{}
	hasSelf, bad := false, false
	for i, h := range d.MTASTSMX {
		f := fmt.Sprintf("%s.mta_sts_mx[%d]", field, i)
		name, err := auth.ParseDomain(h)
		if err != nil {
			p.add(f, "%q is not a host name: %v", h, err)
			bad = true
			continue
		}
		if seen[name] {
			p.add(f, "duplicated host name %s", name)
		}
		seen[name] = true
		hasSelf = hasSelf || name == self
	}
	// A name in error may be the one meant for this server: one line is
	// enough.
	if selfErr == nil && !bad && !hasSelf {
		p.add(field+".mta_sts_mx", "does not name this server's hostname %s: enforcing senders would refuse to deliver to it", self)
	}
}
