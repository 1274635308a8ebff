package inbound

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/server/config"
)

// OptionsFromConfig returns the checker options of a server configuration
// and, when greylisting is on, opens its database <data_dir>/greylist.db
// (the caller closes it after the servers stopped).
func OptionsFromConfig(cfg *config.Config, res Resolver, log *slog.Logger) (Options, *Greylist, error) {
	return SharedOptionsFromConfig(context.Background(), cfg, res, log, nil)
}

// SharedOptionsFromConfig is OptionsFromConfig for a node whose store is
// the PostgreSQL database of pool: the greylist is then the one in that
// database, shared by the nodes (a sender deferred by one is accepted by
// another once the delay is over). A nil pool: the local file.
func SharedOptionsFromConfig(ctx context.Context, cfg *config.Config, res Resolver, log *slog.Logger, pool *pgxpool.Pool) (Options, *Greylist, error) {
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
		gopts := GreylistOptions{Delay: time.Duration(in.GreylistDelay)}
		var g *Greylist
		var err error
		if pool != nil {
			g, err = OpenGreylistPostgres(ctx, pool, gopts)
		} else {
			g, err = OpenGreylist(filepath.Join(cfg.DataDir, "greylist.db"), gopts)
		}
		if err != nil {
			return Options{}, nil, err
		}
		o.Greylist = g
		return o, g, nil
	}
	return o, nil, nil
}
