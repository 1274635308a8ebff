package dkim

import (
	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/server/config"
)

// KeysFromConfig ensures the keys of every domain's selectors under
// contract.DKIMKeyDir and returns them all (for NewSigner and for `mailctl
// serve status`, which publishes their records), following each domain's
// rotation history (rotation.go).
func KeysFromConfig(cfg *config.Config) ([]Key, error) {
	cfg = cfg.WithDefaults()
	dir := contract.DKIMKeyDir(cfg.DataDir)
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
