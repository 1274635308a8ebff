package desired

import (
	"net"
	"net/url"

	"github.com/mailctl/mailctl/plan/config"
)

// Packages are the Debian packages apply installs on a server beside
// mailctl: rspamd when the spam filter is on and rspamd runs on the server
// itself (no url, or a loopback one). A lab uses the machine's own.
func Packages(s *config.Server) []string {
	sp := s.Spam
	if sp == nil || !sp.Rspamd || s.Local != nil {
		return nil
	}
	for _, u := range []string{sp.URL, sp.ControllerURL} {
		if u != "" && !loopbackURL(u) {
			return nil
		}
	}
	return []string{"rspamd"}
}

func loopbackURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
