package daemon_test

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeRecipientDelimiter: with recipient_delimiter "+-", mail sent
// over port 25 to alice+x@ and alice-y@ lands in alice's INBOX (read over
// IMAP), and an address with a delimiter nothing matches gets 550.
func TestServeRecipientDelimiter(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "server.json")
	cfg := baseConfig(t, filepath.Join(dir, "data"))
	delims := "+-"
	cfg.RecipientDelimiter = &delims
	writeConfig(t, cfgPath, cfg)
	srv := startServer(t, cfgPath)
	pool := roots(t, cfg.DataDir)

	for _, to := range []string{"alice+lists@example.test", "alice-shop@example.test"} {
		out, err := swaks(t, "--server", srv.addr("smtp"), "--from", "someone@elsewhere.test",
			"--to", to, "--body", "token-"+to)
		if err != nil {
			t.Fatalf("swaks to %s: %v\n%s", to, err, out)
		}
	}
	out, err := swaks(t, "--server", srv.addr("smtp"), "--from", "someone@elsewhere.test",
		"--to", "bob-shop@example.test", "--body", "nope")
	if err == nil || !strings.Contains(out, "550") {
		t.Errorf("bob-shop@ (no bob): err %v, want 550\n%s", err, out)
	}
	bodies := fetchBodies(t, srv.addr("imaps"), pool, "alice@example.test", "alice-pw", "INBOX")
	if len(bodies) != 2 || !bytes.Contains(bytes.Join(bodies, nil), []byte("token-alice+lists@")) || !bytes.Contains(bytes.Join(bodies, nil), []byte("token-alice-shop@")) {
		t.Errorf("alice's INBOX holds %d messages, want the one to alice+lists@ and the one to alice-shop@", len(bodies))
	}
}
