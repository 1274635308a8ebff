package verify

import "github.com/mailctl/mailctl/plan/config"

// domainServers are the servers of d (all its nodes), or its one Server
// of a Domain built without the list.
func domainServers(d *config.Domain) []*config.Server {
	if len(d.Servers) > 0 {
		return d.Servers
	}
	if d.Server != nil {
		return []*config.Server{d.Server}
	}
	return nil
}

// hostnames are the host names of d's servers: its MX, which its MTA-STS
// policy lists.
func hostnames(d *config.Domain) []string {
	var out []string
	for _, s := range domainServers(d) {
		out = append(out, s.Hostname)
	}
	return out
}
