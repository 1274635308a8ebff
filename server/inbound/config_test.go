package inbound_test

import (
	"slices"
	"testing"

	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/inbound"
	"github.com/mailctl/mailctl/server/queue"
)

func TestOptionsFromConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := &config.Config{Hostname: "mx.example.org", DataDir: dir}
	o, g, err := inbound.OptionsFromConfig(cfg, &queue.DNS{}, nil)
	if err != nil || g != nil || !slices.Equal(o.DNSBLZones, []string{"zen.spamhaus.org"}) || o.Hostname != "mx.example.org" {
		t.Fatalf("defaults: %+v %v %v", o, g, err)
	}
	cfg.Inbound = &config.Inbound{DNSBLZones: []string{}, Greylisting: true, DMARCPolicy: "report", SkipNetworks: []string{"192.0.2.0/24"}}
	o, g, err = inbound.OptionsFromConfig(cfg, &queue.DNS{}, nil)
	if err != nil || g == nil {
		t.Fatalf("greylisting: %v %v", g, err)
	}
	defer g.Close()
	if len(o.DNSBLZones) != 0 || !o.IgnoreDMARCPolicy || len(o.SkipNetworks) != 1 || o.Greylist != g {
		t.Errorf("options = %+v", o)
	}
}
