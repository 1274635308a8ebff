package desired_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	serverconfig "github.com/mailctl/mailctl/server/config"
)

// TestServerSpam: the spam block reaches the server's configuration,
// which the server accepts; bad values are errors at their line; without
// the block or with rspamd = false there is no filter.
func TestServerSpam(t *testing.T) {
	t.Parallel()
	block := `  spam {
    rspamd         = true
    url            = "http://10.0.0.5:11333"
    controller_url = "http://10.0.0.5:11334"
    reject_score   = 15
    junk_score     = 5.5
    timeout        = "10s"
  }
`
	src := strings.Replace(mailSettings, "  inbound {", block+"  inbound {", 1)
	dir := t.TempDir()
	loadSrc := func(src string) (*config.Config, error) {
		cfg, diags := config.LoadSources(dir, map[string][]byte{"mail.hcl": []byte(src)}, config.LoadOptions{Getenv: func(string) string { return "" }})
		if diags.HasErrors() {
			return nil, diags
		}
		return cfg, nil
	}
	cfg, err := loadSrc(src)
	if err != nil {
		t.Fatal(err)
	}
	sc := desired.ServerConfig(cfg, cfg.Servers[0])
	if err := sc.WithDefaults().Validate(); err != nil {
		t.Fatalf("server config invalid: %v", err)
	}
	want := serverconfig.Spam{Rspamd: true, URL: "http://10.0.0.5:11333", ControllerURL: "http://10.0.0.5:11334",
		RejectScore: 15, JunkScore: 5.5, Timeout: serverconfig.Duration(10 * time.Second)}
	if sc.Spam == nil || *sc.Spam != want {
		t.Errorf("spam = %+v, want %+v", sc.Spam, want)
	}

	for _, s := range []string{mailSettings, strings.Replace(mailSettings, "  inbound {", "  spam { rspamd = false }\n  inbound {", 1)} {
		cfg, err := loadSrc(s)
		if err != nil {
			t.Fatal(err)
		}
		if sc := desired.ServerConfig(cfg, cfg.Servers[0]); sc.Spam != nil {
			t.Errorf("no filter wanted, got %+v", sc.Spam)
		}
	}

	bad := []struct{ from, to, want string }{
		{`junk_score     = 5.5`, `junk_score     = 20`, "Junk score not below reject score"},
		{`reject_score   = 15`, `reject_score   = -3`, "must be a score from 0.1 to 10000"},
		{`url            = "http://10.0.0.5:11333"`, `url            = "10.0.0.5:11333"`, "Invalid rspamd URL"},
		{`timeout        = "10s"`, `timeout        = "1h"`, "Invalid duration"},
		{`rspamd         = true`, `rspamd         = "yes"`, "must be true or false"},
		{`rspamd         = true`, ``, "Spam filter not turned on"},
		{`junk_score     = 5.5`, `junk_scor      = 5.5`, "Unsupported argument"},
	}
	for _, tc := range bad {
		_, err := loadSrc(strings.Replace(src, tc.from, tc.to, 1))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error %q", tc.to, err, tc.want)
		}
	}
}

// TestPackages: apply installs rspamd on a VPS whose filter uses rspamd
// on the server itself, not for a remote rspamd, a lab or no filter.
func TestPackages(t *testing.T) {
	t.Parallel()
	vps := func(sp *config.Spam) *config.Server { return &config.Server{SSH: &config.SSH{}, Spam: sp} }
	for _, tc := range []struct {
		name string
		srv  *config.Server
		want string
	}{
		{"no filter", vps(nil), ""},
		{"off", vps(&config.Spam{}), ""},
		{"default url", vps(&config.Spam{Rspamd: true}), "rspamd"},
		{"loopback", vps(&config.Spam{Rspamd: true, URL: "http://127.0.0.1:11333", ControllerURL: "http://localhost:11334"}), "rspamd"},
		{"remote", vps(&config.Spam{Rspamd: true, URL: "http://10.0.0.5:11333"}), ""},
		{"lab", &config.Server{Local: &config.Local{}, Spam: &config.Spam{Rspamd: true}}, ""},
	} {
		if got := strings.Join(desired.Packages(tc.srv), " "); got != tc.want {
			t.Errorf("%s: packages %q, want %q", tc.name, got, tc.want)
		}
	}
}
