package desired

import (
	"fmt"
	"net/netip"
	"path"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/plan/config"
)

// domainServers are the servers of d: Servers, or the one Server of a
// Domain built without the list.
func domainServers(d *config.Domain) []*config.Server {
	if len(d.Servers) > 0 {
		return d.Servers
	}
	if d.Server != nil {
		return []*config.Server{d.Server}
	}
	return nil
}

// mxValues are the MX records of d: one per server, with its priority, in
// the configured order.
func mxValues(d *config.Domain) []string {
	var out []string
	for _, s := range domainServers(d) {
		out = append(out, fmt.Sprintf("%d %s.", d.MXPriorityOf(s), s.Hostname))
	}
	return out
}

// hostnames are the host names of d's servers: the MX an MTA-STS policy
// lists.
func hostnames(d *config.Domain) []string {
	var out []string
	for _, s := range domainServers(d) {
		out = append(out, s.Hostname)
	}
	return out
}

// spfIP is the SPF mechanism of ip ("ip4:203.0.113.10"), "" when unset.
func spfIP(ip netip.Addr, mech string) string {
	if !ip.IsValid() {
		return ""
	}
	return mech + ip.String()
}

// SourceKeys are the keys of keys that a domain publishes: those its first
// server reported (or whose server is unknown). The other servers of a
// domain sign with copies of the first server's keys, which apply
// distributes (plan/apply); what they report themselves is not
// published, so that a node that generated its own keys before it got
// the copies cannot publish a second key under one selector.
func SourceKeys(cfg *config.Config, keys []DKIMKey) []DKIMKey {
	src := map[string]string{}
	for _, d := range cfg.Domains {
		if d.Server != nil && len(d.Servers) > 1 {
			src[d.Name] = d.Server.Name
		}
	}
	if len(src) == 0 {
		return keys
	}
	out := make([]DKIMKey, 0, len(keys))
	for _, k := range keys {
		if f, ok := src[k.Domain]; ok && k.Server != "" && k.Server != f {
			continue
		}
		out = append(out, k)
	}
	return out
}

// StoreURLFile is where apply puts the PostgreSQL URL of server s (a
// secret, mode 0600, owned by the server's user), which server.json names
// (store.postgres_url_file): beside server.json on a VPS, in the lab
// directory of a local server. "" for a server without a store.
func StoreURLFile(cfg *config.Config, s *config.Server) string {
	if s.Store == nil {
		return ""
	}
	if s.Local != nil {
		return path.Join(LocalDir(cfg, s), storeURLFile)
	}
	return path.Join(path.Dir(contract.VPSConfigFile), storeURLFile)
}

// storeURLFile is the name of the file holding the store's URL.
const storeURLFile = "postgres-url"
