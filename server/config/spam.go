package config

import (
	"net/url"
	"time"
)

// Spam configures the content filtering of mail received on port 25
// (server/spam).
type Spam struct {
	// Rspamd turns the filter on: every message is scanned by rspamd.
	Rspamd bool `json:"rspamd"`
	// URL of rspamd's normal worker; default DefaultRspamdURL.
	URL string `json:"url,omitempty"`
	// ControllerURL of rspamd's controller, which learns; default
	// DefaultRspamdControllerURL.
	ControllerURL string `json:"controller_url,omitempty"`
	// RejectScore refuses (550 at DATA) messages scoring at least this;
	// 0: rspamd's reject action decides.
	RejectScore float64 `json:"reject_score,omitempty"`
	// JunkScore files messages scoring at least this into Junk; 0:
	// rspamd's "add header" and "rewrite subject" actions decide.
	JunkScore float64 `json:"junk_score,omitempty"`
	// Timeout bounds one scan; on expiry the message is accepted
	// unscanned. Default 20s.
	Timeout Duration `json:"timeout,omitempty"`
}

// Defaults of Spam: Debian's rspamd on the same host.
const (
	DefaultRspamdURL           = "http://127.0.0.1:11333"
	DefaultRspamdControllerURL = "http://127.0.0.1:11334"
	DefaultRspamdTimeout       = 20 * time.Second
)

// SpamFilter returns the effective spam settings, or nil when rspamd is
// not on.
func (c *Config) SpamFilter() *Spam {
	if c.Spam == nil || !c.Spam.Rspamd {
		return nil
	}
	s := *c.Spam
	if s.URL == "" {
		s.URL = DefaultRspamdURL
	}
	if s.ControllerURL == "" {
		s.ControllerURL = DefaultRspamdControllerURL
	}
	if s.Timeout == 0 {
		s.Timeout = Duration(DefaultRspamdTimeout)
	}
	return &s
}

func (c *Config) validateSpam(p *problems) {
	s := c.Spam
	if s == nil {
		return
	}
	for _, u := range []struct{ name, v string }{{"spam.url", s.URL}, {"spam.controller_url", s.ControllerURL}} {
		if u.v == "" {
			continue
		}
		if pu, err := url.Parse(u.v); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			p.add(u.name, "%q is not an http:// or https:// URL", u.v)
		}
	}
	if s.RejectScore < 0 || s.RejectScore > 10000 {
		p.add("spam.reject_score", "%v is outside 0..10000", s.RejectScore)
	}
	if s.JunkScore < 0 || s.JunkScore > 10000 {
		p.add("spam.junk_score", "%v is outside 0..10000", s.JunkScore)
	}
	if s.RejectScore > 0 && s.JunkScore > 0 && s.JunkScore >= s.RejectScore {
		p.add("spam.junk_score", "%v must be below reject_score %v", s.JunkScore, s.RejectScore)
	}
	if d := time.Duration(s.Timeout); d < 0 || d > 5*time.Minute {
		p.add("spam.timeout", "%s is outside 0..5m", s.Timeout)
	}
}
