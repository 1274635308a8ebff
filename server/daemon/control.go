package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"

	"github.com/mailctl/mailctl/internal/formatversion"
	"github.com/mailctl/mailctl/server/store"
	"github.com/mailctl/mailctl/server/tlsconf"
)

// StatusFormatVersion is the version of the Status JSON document.
const StatusFormatVersion = formatversion.Current

// Status is what the control socket reports: the state that `mailctl plan`
// reads back from a running server.
type Status struct {
	FormatVersion formatversion.Version `json:"format_version"`
	Version       string                `json:"version"`
	// ConfigDigest is config.Config.Digest() of the configuration in use.
	ConfigDigest string       `json:"config_digest"`
	ConfigPath   string       `json:"config_path"`
	Hostname     string       `json:"hostname"`
	StartedAt    time.Time    `json:"started_at"`
	LastReload   *ReloadState `json:"last_reload,omitempty"`
	// RestartNeeded names the settings changed since start that only a
	// restart applies (listen, hostname, limits, ...).
	RestartNeeded []string `json:"restart_needed,omitempty"`
	// RestartDigests are config.Config.RestartDigests of the configuration
	// the server was started with: the provisioner compares them with the
	// configuration it installs to decide between reload and restart.
	RestartDigests map[string]string `json:"restart_digests,omitempty"`
	Users          []UserStatus      `json:"users"`
	// DKIM lists the public keys to publish; empty until DKIM signing exists.
	DKIM          []DKIMKey          `json:"dkim"`
	TLSMode       string             `json:"tls_mode"`
	Certificates  []tlsconf.CertInfo `json:"certificates"`
	StoreBytes    int64              `json:"store_bytes"`
	QueueMessages int                `json:"queue_messages"`
	Listeners     map[string]string  `json:"listeners"`
	Domains       []string           `json:"domains"`
	MTASTS        map[string]string  `json:"mta_sts_ids,omitempty"`

	// Quarantine lists the index records that the store could not read
	// and moved to its quarantine directory (store.Open): an operator
	// should look at them.
	Quarantine []store.QuarantineEntry `json:"store_quarantine"`

	// For mailctl status (opsstatus.go): the outbound queue's age and
	// deferral reasons, the data directory's disk, the last errors logged.
	Queue      *QueueStatus `json:"queue,omitempty"`
	Disk       *DiskStatus  `json:"disk,omitempty"`
	LastErrors []LogRecord  `json:"last_errors"`
}

// ReloadState is the outcome of the last SIGHUP.
type ReloadState struct {
	At    time.Time `json:"at"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
}

// UserStatus is one mailbox owner.
type UserStatus struct {
	Address    string `json:"address"`
	QuotaBytes int64  `json:"quota_bytes"`
	UsedBytes  int64  `json:"used_bytes"`
	Messages   int    `json:"messages"`
}

// DKIMKey is a public key to publish as <selector>._domainkey.<domain> TXT.
type DKIMKey struct {
	Domain    string `json:"domain"`
	Selector  string `json:"selector"`
	Algorithm string `json:"algorithm"`
	PublicKey string `json:"public_key"`
	Record    string `json:"record"`
	// State is the selector's place in a rotation: signing, pending (new,
	// to publish before it signs), retired (published, no longer signing,
	// since Retired) or published (a configured previous selector).
	State   string    `json:"state"`
	Created time.Time `json:"created"`
	Retired time.Time `json:"retired,omitzero"`
}

// serveControl answers GET /status, the queue and the DKIM rotation
// endpoints (dkimctl.go) on the unix
// socket ln until it is closed.
func serveControl(ln net.Listener, status func(ctx context.Context) (*Status, error), q func() QueueAdmin, dkimStep func(ctx context.Context, action, domain, selector string) error) *http.Server {
	mux := http.NewServeMux()
	handleQueue(mux, q)
	if dkimStep != nil {
		handleDKIM(mux, dkimStep)
	}
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st, err := status(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(st)
	})
	// Go profiles, for the operator only (the socket is 0600):
	// curl --unix-socket control.sock http://x/debug/pprof/profile?seconds=10
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return srv
}

// listenControl creates the control socket at path, readable and writable
// by the server's user only. A stale socket (nothing answers) is replaced;
// a live one means another server runs with this data.
func listenControl(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create control socket directory: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %q: another server is running", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale control socket %q: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket %q: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod control socket %q: %w", path, err)
	}
	return ln, nil
}

// QueryStatus asks the server behind the control socket at path for its
// status.
func QueryStatus(ctx context.Context, path string) (*Status, error) {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://mailctl/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("query control socket %q: %w", path, err)
		}
		return nil, fmt.Errorf("query control socket %q (is the server running?): %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read status: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("server status: %s: %s", resp.Status, body)
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("decode status: %w", err)
	}
	return &st, nil
}
