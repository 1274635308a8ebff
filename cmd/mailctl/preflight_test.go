package main

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan/verify"
)

// preflightConfig has a local server (checked on this machine) and one
// reached over SSH (a real sshd on this machine), on free ports.
func preflightConfig(t *testing.T, sshd *testenv.SSHD) string {
	t.Helper()
	ports := func() string {
		var b strings.Builder
		for _, name := range []string{"smtp", "submission", "submissions", "imap", "imaps", "https", "http"} {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			fmt.Fprintf(&b, "    %s = %d\n", name, l.Addr().(*net.TCPAddr).Port)
		}
		return "  ports {\n" + b.String() + "  }\n"
	}
	return fmt.Sprintf(`provider "zonefile" "z" {
  dir = "zones"
}
server "lab" {
  hostname = "mail.example.test"
  ipv4     = "127.0.0.1"
  local {
    dir = ".mailctl"
  }
  tls {
    self_signed = true
  }
%s}
server "vps" {
  hostname = "mx1.example.org"
  ipv4     = "192.0.2.10"
  ssh {
    address  = %q
    host_key = %q
    identity = %q
  }
  tls {
    self_signed = true
  }
%s}
domain "example.test" {
  dns    = provider.zonefile.z
  server = server.lab
}
`, ports(), sshd.Addr, sshd.HostKeyLine(0), sshd.ClientKeyFile, ports())
}

func TestPreflightCommand(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), preflightConfig(t, sshd), 0o644)
	probe := testenv.SMTPGreeter(t, "220 probe.test ESMTP")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	t.Run("local server passes", func(t *testing.T) {
		e, out, errb := testEnv(dir)
		if code := runCLI(t, e, "preflight", "-server", "lab", "-outbound-probe", probe, "-dnsbl", "none"); code != 0 {
			t.Fatalf("preflight -server lab = %d, want 0\n%s%s", code, out, errb)
		}
		for _, want := range []string{"CHECK", "ssh         mail.example.test  skip", "outbound25  mail.example.test  pass    from this machine to " + probe + ": 220 probe.test ESMTP",
			"ports       mail.example.test  pass    free: "} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out.String(), "mx1.example.org") {
			t.Errorf("-server lab checked the other server too:\n%s", out)
		}
	})

	t.Run("blocked port 25 fails with the fix", func(t *testing.T) {
		e, out, errb := testEnv(dir)
		if code := runCLI(t, e, "preflight", "-server", "vps", "-outbound-probe", closed, "-dnsbl", "none"); code != 2 {
			t.Fatalf("preflight with a closed probe = %d, want 2\n%s%s", code, out, errb)
		}
		for _, want := range []string{"ssh         mx1.example.org  pass    logged in to " + sshd.Addr + " as root",
			"fix: your provider blocks outbound port 25: ask support to open it, or use a relay { } smarthost",
			"fix: set the PTR of 192.0.2.10 to mx1.example.org in your hosting panel"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		e, out, errb := testEnv(dir)
		code := runCLI(t, e, "preflight", "-json", "-outbound-probe", probe, "-dnsbl", "none")
		if code != 0 && code != 2 {
			t.Fatalf("preflight -json = %d\n%s", code, errb)
		}
		var doc struct {
			FormatVersion string          `json:"format_version"`
			Results       []verify.Result `json:"results"`
			Summary       verify.Summary  `json:"summary"`
		}
		if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		goldenSkeleton(t, "json/preflight.schema", out.Bytes())
		servers := map[string]int{}
		for _, r := range doc.Results {
			if r.Check == "outbound25" && r.Status == verify.Pass {
				servers[r.Target]++
			}
		}
		if doc.FormatVersion == "" || servers["mail.example.test"] != 1 || servers["mx1.example.org"] != 1 {
			t.Errorf("JSON = %s, want format_version and outbound25 passing on both servers", out)
		}
		want := 0
		if doc.Summary.Fail > 0 {
			want = 2
		}
		if code != want {
			t.Errorf("exit code = %d with %d failures, want %d", code, doc.Summary.Fail, want)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"-server", "nope"}, `no server "nope" in the configuration (servers: lab, vps)`},
			{[]string{"-outbound-probe", "no-port"}, "-outbound-probe wants HOST:PORT"},
			{[]string{"extra"}, "preflight takes no arguments"},
		} {
			t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
				e, _, errb := testEnv(dir)
				if code := runCLI(t, e, append([]string{"preflight"}, tc.args...)...); code != 1 || !strings.Contains(errb.String(), tc.want) {
					t.Errorf("preflight %v = %d, stderr %q; want 1 and %q", tc.args, code, errb, tc.want)
				}
			})
		}
	})

	t.Run("help", func(t *testing.T) {
		e, out, _ := testEnv(dir)
		if code := runCLI(t, e, "preflight", "-h"); code != 0 || !strings.Contains(out.String(), "outbound25  from the server") {
			t.Errorf("preflight -h = %d, stdout:\n%s", code, out)
		}
	})
}
