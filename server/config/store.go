package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

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
	// QueueLease is how long a node holds an outbound message it is
	// sending before another node may take it over (its node died):
	// default 2m. Shorter hands a dead node's deliveries over sooner; a
	// lease renewed every third of it costs a statement per attempt.
	QueueLease Duration `json:"queue_lease,omitempty"`
}

// Queue lease bounds: a lease is renewed every third of its time, so a
// few seconds is the floor; an hour is already a long wait for a
// dead node's mail.
const (
	MinQueueLease = 3 * time.Second
	MaxQueueLease = time.Hour
)

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
	if d := time.Duration(s.QueueLease); d != 0 && (d < MinQueueLease || d > MaxQueueLease) {
		p.add("store.queue_lease", "%s is outside %s..%s", s.QueueLease, Duration(MinQueueLease), Duration(MaxQueueLease))
	}
	if s.QueueLease != 0 && s.PostgresURLFile == "" {
		p.add("store.queue_lease", "is only for a store shared with postgres_url_file (one node's queue has no leases)")
	}
	if s.PostgresURLFile != "" && !postgresWired {
		p.add("store.postgres_url_file", "the PostgreSQL store is not available in this build yet")
	}
}

// ReadPostgresURL reads the connection URL of the PostgreSQL store from
// path. The URL holds the database password: a file that the group or
// others may read or write is refused.
func ReadPostgresURL(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("store.postgres_url_file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("store.postgres_url_file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("store.postgres_url_file %s is open to group or others (mode %04o): it holds the database password, chmod 600 it", path, perm)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("store.postgres_url_file %s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return "", fmt.Errorf("store.postgres_url_file %s: %w", path, err)
	}
	url := strings.TrimSpace(string(b))
	switch {
	case url == "":
		return "", fmt.Errorf("store.postgres_url_file %s is empty: it must hold the database's connection URL", path)
	case strings.ContainsAny(url, "\r\n"):
		return "", fmt.Errorf("store.postgres_url_file %s holds more than one line: it must hold the connection URL alone", path)
	}
	return url, nil
}
