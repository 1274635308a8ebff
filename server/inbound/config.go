package inbound

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/mailctl/mailctl/server/config"
)

// OptionsFromConfig returns the checker options of a server configuration
// and, when greylisting is on, opens its database <data_dir>/greylist.db
// (the caller closes it after the servers stopped).
func OptionsFromConfig(cfg *config.Config, res Resolver, log *slog.Logger) (Options, *Greylist, error) {
	cfg = cfg.WithDefaults()
	o := Options{Hostname: cfg.Hostname, Resolver: res, DNSBLZones: cfg.DNSBLZones(), Logger: log}
	in := cfg.Inbound
	if in == nil {
		return o, nil, nil
	}
	o.IgnoreDMARCPolicy = in.DMARCPolicy == "report"
	for _, s := range in.SkipNetworks {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return Options{}, nil, fmt.Errorf("inbound.skip_networks: %w", err)
		}
		o.SkipNetworks = append(o.SkipNetworks, n)
	}
	if in.Greylisting {
		g, err := OpenGreylist(filepath.Join(cfg.DataDir, "greylist.db"), GreylistOptions{Delay: time.Duration(in.GreylistDelay)})
		if err != nil {
			return Options{}, nil, err
		}
		o.Greylist = g
		return o, g, nil
	}
	return o, nil, nil
}
