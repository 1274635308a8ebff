package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/remote"
)

// TestDeployMailctlServe deploys the real mailctl binary with a minimal
// self-signed configuration and checks that "mailctl serve" runs inside
// the hardened unit (no root, read-only system, syscall filter, W^X) and
// answers "serve status" through its control socket.
func TestDeployMailctlServe(t *testing.T) {
	v := sharedVPS(t)
	c := dialVPS(t)
	ctx, cancel := vmContext(t, 6*time.Minute)
	defer cancel()
	// Start clean even if another test left a deployment behind.
	if _, err := remote.Destroy(ctx, c, true); err != nil {
		t.Fatalf("Destroy before the test: %v", err)
	}
	t.Cleanup(func() { remote.Destroy(context.Background(), c, true) })

	bin := filepath.Join(t.TempDir(), "mailctl")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/mailctl/mailctl/cmd/mailctl")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build mailctl: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	sum := hex.EncodeToString(s[:])
	config := []byte(`{"format_version":1,"hostname":"mail.example.test",
"listen":{"smtp":":25","submission":":587","submissions":":465","imap":":143","imaps":":993","https":":443"},
"tls":{"mode":"self-signed"},"domains":[{"name":"example.test"}],"users":[],"limits":{},
"outbound":{"dns_servers":["127.0.0.1:53"]}}`)
	// The VM has no nameserver in /etc/resolv.conf, which serve refuses;
	// nothing answers on 127.0.0.1:53, so lookups fail at once.

	t0 := time.Now()
	r, err := remote.Deploy(ctx, c, remote.DeployOptions{Version: "e2e", Binary: strings.NewReader(string(b)), SHA256: sum, Config: config,
		Health: remote.Health{Timeout: vmTimeout(120 * time.Second)}})
	t.Logf("deploy of mailctl (%d MB): %.1fs, actions %v", len(b)>>20, time.Since(t0).Seconds(), r.Actions)
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	if got := hostBanner(t, v.HostPort(25)); !strings.HasPrefix(got, "220 mail.example.test") {
		t.Errorf("banner on port 25 = %q, want 220 mail.example.test ...", got)
	}
	out, err := remote.Status(ctx, c)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	var st map[string]any
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("Status is not JSON: %v\n%s", err, out)
	}
	t.Logf("status: %.300s", out)

	t0 = time.Now()
	r, err = remote.Deploy(ctx, c, remote.DeployOptions{Version: "e2e", SHA256: sum, Config: config})
	t.Logf("no-op deploy: %.1fs", time.Since(t0).Seconds())
	if err != nil || r.Changed() {
		t.Errorf("second Deploy = %v, %v; want no change", r.Actions, err)
	}
}
