package queue_test

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/queue"
)

func TestOptionsFromConfig(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "relay.pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	srv, _ := serverTLS()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificates[0].Certificate[0]}), 0o644)
	cfg := &config.Config{
		FormatVersion: config.FormatVersion, Hostname: "mx.example.org", DataDir: dir,
		Domains: []config.Domain{{Name: "Example.org"}},
		Outbound: &config.Outbound{AddressPreference: "ipv4", SourceIPv4: "192.0.2.1", SourceIPv6: "2001:db8::1",
			MaxAge: config.Duration(48 * time.Hour), Warmup: &config.Warmup{Start: "2026-03-02", Overflow: "relay"}},
		Relay: &config.Relay{Address: "relay.example:587", Username: "u", PasswordFile: pw, CAFile: ca, MXHosts: []string{"*.outlook.com"}},
	}
	d, err := auth.NewDirectory([]string{"example.org"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := queue.OptionsFromConfig(cfg, &queue.DNS{}, nil, d, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if o.Dir != filepath.Join(dir, "queue") || o.Hostname != "mx.example.org" || !o.PreferIPv4 ||
		o.SourceIPv4.String() != "192.0.2.1" || o.SourceIPv6.String() != "2001:db8::1" || o.MaxAge != 48*time.Hour {
		t.Errorf("options = %+v", o)
	}
	if o.Warmup.Weeks != config.DefaultWarmupWeeks || !o.Warmup.OverflowRelay || !o.Warmup.Start.Equal(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("warmup = %+v", o.Warmup)
	}
	if r := o.Relay; r == nil || r.Password != "s3cret" || r.TLSConfig == nil || r.TLSConfig.RootCAs == nil || len(r.MXHosts) != 1 {
		t.Errorf("relay = %+v", o.Relay)
	}
	if !o.IsLocal("example.ORG") || o.IsLocal("example.net") {
		t.Errorf("IsLocal wrong")
	}
	if o.Node != "mx.example.org" {
		t.Errorf("node = %q, want the host name", o.Node)
	}
	cfg.Store = &config.Store{Node: "mx-2"}
	if o, err := queue.OptionsFromConfig(cfg, &queue.DNS{}, nil, d, nil, testLogger(t)); err != nil || o.Node != "mx-2" {
		t.Errorf("node = %q, %v; want mx-2 (store.node)", o.Node, err)
	}
	cfg.Relay.PasswordFile = filepath.Join(dir, "missing")
	if _, err := queue.OptionsFromConfig(cfg, &queue.DNS{}, nil, d, nil, testLogger(t)); err == nil {
		t.Errorf("missing password file accepted")
	}
}
