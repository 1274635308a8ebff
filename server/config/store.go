package config

import "path/filepath"

// postgresWired: `mailctl serve` runs on server/pgstore when
// store.postgres_url_file is set (server/daemon/storeopen.go). Kept as a
// switch so that a build without that wiring refuses the setting.
const postgresWired = true

// Store chooses where mail is kept. Absent (nil): the embedded store in
// <DataDir>/store, the default.
type Store struct {
	// PostgresURLFile names a file (mode 0600, owned by the server's user)
	// holding the PostgreSQL connection URL of a store that several nodes
	// share (server/pgstore). The URL is a secret: it is never in this
	// file, never logged.
	PostgresURLFile string `json:"postgres_url_file,omitempty"`
	// Node names this server among the nodes sharing the store (queue
	// leases, logs); default Hostname.
	Node string `json:"node,omitempty"`
}

// NodeName is the name of this node among those sharing a store.
func (c *Config) NodeName() string {
	if c.Store != nil && c.Store.Node != "" {
		return c.Store.Node
	}
	return c.Hostname
}

func (c *Config) validateStore(p *problems) {
	s := c.Store
	if s == nil {
		return
	}
	if s.PostgresURLFile != "" && !filepath.IsAbs(s.PostgresURLFile) {
		p.add("store.postgres_url_file", "%q must be an absolute path", s.PostgresURLFile)
	}
	if s.PostgresURLFile != "" && !postgresWired {
		p.add("store.postgres_url_file", "the PostgreSQL store is not available in this build yet")
	}
}
