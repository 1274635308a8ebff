package dkim

import (
	"path/filepath"

	"github.com/mailctl/mailctl/server/config"
)

// KeysFromConfig ensures the keys of every domain's selectors under
// <data_dir>/dkim and returns them all (for NewSigner and for `mailctl
// serve status`, which publishes their records), following each domain's
// rotation history (rotation.go).
func KeysFromConfig(cfg *config.Config) ([]Key, error) {
	cfg = cfg.WithDefaults()
	dir := filepath.Join(cfg.DataDir, "dkim")
	var all []Key
	for _, d := range cfg.Domains {
		if len(d.DKIMSelectors) == 0 {
			continue
		}
		keys, err := DomainKeys(dir, d.Name, d.DKIMSelectors)
		if err != nil {
			return nil, err
		}
		all = append(all, keys...)
	}
	return all, nil
}
