package desired

import (
	"github.com/mailctl/mailctl/plan/config"
	serverconfig "github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/web"
)

// setMTASTS fills the MTA-STS fields of sd, the server.json entry of d.
// A domain of several servers lists them all (their host names, in the
// domain's order) so that each serves a policy naming every MX; a domain
// of one server leaves the list out, which names that server.
func setMTASTS(sd *serverconfig.Domain, d *config.Domain) {
	if d.MTASTS == nil {
		return
	}
	sd.MTASTSMode, sd.MTASTSMaxAge = d.MTASTS.Mode, d.MTASTS.MaxAge
	if len(domainServers(d)) > 1 {
		sd.MTASTSMX = hostnames(d)
	}
}

// mtastsID is the id of the policy that d's servers serve, for the
// _mta-sts TXT record: the server's own function (web.MTASTSPolicy) on the
// entry ServerConfig writes, so the record and the policy always agree.
func mtastsID(d *config.Domain) string {
	var sd serverconfig.Domain
	setMTASTS(&sd, d)
	host := ""
	if ss := domainServers(d); len(ss) > 0 {
		host = ss[0].Hostname
	}
	_, id := web.MTASTSPolicy(host, sd)
	return id
}
