package config

import (
	"net/url"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Spam is a server's `spam { rspamd = true ... }` block: content filtering
// of port 25 by rspamd, which apply installs from the distribution.
type Spam struct {
	Rspamd bool
	// URL and ControllerURL of rspamd's normal worker and controller;
	// empty: the server's defaults (rspamd on the same host).
	URL, ControllerURL string
	// RejectScore and JunkScore; 0: rspamd's own actions decide.
	RejectScore, JunkScore float64
	// Timeout of a scan; 0: the server's default (20s).
	Timeout time.Duration
}

func (d *decoder) spam(b *hcl.Block) *Spam {
	c, diags := b.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "rspamd"}, {Name: "url"}, {Name: "controller_url"}, {Name: "reject_score"}, {Name: "junk_score"}, {Name: "timeout"},
	}})
	d.diags = append(d.diags, diags...)
	s := &Spam{}
	if a := c.Attributes["rspamd"]; a != nil {
		s.Rspamd = d.boolean(a)
	}
	for _, u := range []struct {
		name string
		dst  *string
	}{{"url", &s.URL}, {"controller_url", &s.ControllerURL}} {
		a := c.Attributes[u.name]
		if a == nil {
			continue
		}
		*u.dst = d.plainStr(a)
		if pu, err := url.Parse(*u.dst); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			d.errf(a.Expr.Range().Ptr(), "Invalid rspamd URL", "%q must be an http:// or https:// URL, like \"http://127.0.0.1:11333\".", *u.dst)
		}
	}
	s.RejectScore = d.score(c.Attributes["reject_score"])
	s.JunkScore = d.score(c.Attributes["junk_score"])
	if s.RejectScore > 0 && s.JunkScore >= s.RejectScore {
		d.errf(c.Attributes["junk_score"].Expr.Range().Ptr(), "Junk score not below reject score",
			"junk_score (%g) must be below reject_score (%g): a message is either filed into Junk or refused.", s.JunkScore, s.RejectScore)
	}
	if a := c.Attributes["timeout"]; a != nil {
		s.Timeout = d.durationAttr(a, time.Second, 5*time.Minute, "20s")
	}
	if !s.Rspamd && len(c.Attributes) > 0 && c.Attributes["rspamd"] == nil {
		d.errf(b.DefRange.Ptr(), "Spam filter not turned on", "Add rspamd = true to the spam block to filter mail with rspamd.")
	}
	return s
}

// score reads an rspamd score: a number from 0.1 to 10000.
func (d *decoder) score(a *hcl.Attribute) float64 {
	if a == nil {
		return 0
	}
	v, _, ok := d.eval(a.Expr)
	if !ok {
		return 0
	}
	nv, err := convert.Convert(v, cty.Number)
	if err != nil || nv.IsNull() {
		d.errf(a.Expr.Range().Ptr(), "Incorrect attribute value type", "The attribute %q must be a number.", a.Name)
		return 0
	}
	f, _ := nv.AsBigFloat().Float64()
	if f < 0.1 || f > 10000 {
		d.errf(a.Expr.Range().Ptr(), "Invalid value", "The attribute %q must be a score from 0.1 to 10000.", a.Name)
		return 0
	}
	return f
}
