package desired_test

import (
	"testing"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
)

// TestServerConfigOfExamples: the server configuration generated for every
// example server passes the server's own validation.
func TestServerConfigOfExamples(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{"../../examples/local", "../../examples/quickstart", "../../examples/multi-domain"} {
		cfg, diags := config.Load(dir, config.LoadOptions{Getenv: func(string) string { return "x" }})
		if diags.HasErrors() {
			t.Fatalf("%s: %v", dir, diags)
		}
		for _, s := range cfg.Servers {
			sc := desired.ServerConfig(cfg, s)
			if err := sc.WithDefaults().Validate(); err != nil {
				t.Errorf("%s server %s: generated config invalid: %v", dir, s.Name, err)
			}
			if len(sc.Domains) == 0 || len(sc.Users) == 0 {
				t.Errorf("%s server %s: %d domains, %d users", dir, s.Name, len(sc.Domains), len(sc.Users))
			}
			if s.Local != nil && sc.Listen.SMTP != "127.0.0.1:2525" {
				t.Errorf("lab smtp listen = %q, want 127.0.0.1:2525", sc.Listen.SMTP)
			}
		}
	}
}
