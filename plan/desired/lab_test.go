package desired_test

import (
	"strings"
	"testing"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
)

const twoLabs = `
provider "zonefile" "lab" { dir = "zones" }
server "lab2" {
  hostname = "mail.example.test"
  ipv4     = "127.0.0.2"
  local { dir = ".mailctl" }
  ports {
    smtp        = 3525
    submission  = 3587
    submissions = 3465
    imap        = 0
    imaps       = 3993
    https       = 3443
    http        = 0
  }
  tls { self_signed = true }
}
domain "example.test" {
  dns    = provider.zonefile.lab
  server = server.lab2
}
`

// TestLabListenAndSRV: a lab listens on its loopback ipv4 (so that two
// labs run side by side), and the SRV records advertise the ports it
// listens on (they said 587/465/993/143 whatever the ports block said).
func TestLabListenAndSRV(t *testing.T) {
	t.Parallel()
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(twoLabs)}, config.LoadOptions{Getenv: func(string) string { return "" }})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	sc := desired.ServerConfig(cfg, cfg.Servers[0])
	if sc.Listen.SMTP != "127.0.0.2:3525" || sc.Listen.IMAPS != "127.0.0.2:3993" || sc.Listen.IMAP != "" {
		t.Errorf("listen = %+v, want 127.0.0.2 and the configured ports", sc.Listen)
	}
	want := map[string]string{
		"_submissions._tcp.example.test": "0 1 3465 mail.example.test.",
		"_submission._tcp.example.test":  "10 1 3587 mail.example.test.",
		"_imaps._tcp.example.test":       "0 1 3993 mail.example.test.",
		"_imap._tcp.example.test":        "0 0 0 .",
		"_caldavs._tcp.example.test":     "0 1 3443 mail.example.test.",
		"_carddavs._tcp.example.test":    "0 1 3443 mail.example.test.",
	}
	for _, rs := range desired.Records(cfg, nil) {
		if rs.Type != "SRV" {
			continue
		}
		name := strings.TrimSuffix(rs.Name, ".")
		w, ok := want[name]
		if !ok {
			t.Errorf("unexpected SRV %s", name)
			continue
		}
		delete(want, name)
		if len(rs.Values) != 1 || rs.Values[0] != w {
			t.Errorf("SRV %s = %q, want %q", name, rs.Values, w)
		}
	}
	for name := range want {
		t.Errorf("no SRV %s", name)
	}
	// RFC 6764 TXT: where the CalDAV/CardDAV context path is found.
	txt := map[string]string{}
	for _, rs := range desired.Records(cfg, nil) {
		if rs.Type == "TXT" && strings.Contains(rs.Name, "dav") {
			txt[rs.Name] = strings.Join(rs.Values, ",")
		}
	}
	if txt["_caldavs._tcp.example.test"] != "path=/.well-known/caldav" || txt["_carddavs._tcp.example.test"] != "path=/.well-known/carddav" || len(txt) != 2 {
		t.Errorf("DAV TXT records = %q", txt)
	}
}
