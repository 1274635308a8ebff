package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"

	"github.com/mailctl/mailctl/contract"
)

// The status document and the control protocol are the contract between
// the server and the provisioner (package contract); these aliases name
// them in the server's code.
type (
	Status      = contract.Status
	ReloadState = contract.ReloadState
	UserStatus  = contract.UserStatus
	DKIMKey     = contract.DKIMKey
)

// StatusFormatVersion is the version of the Status JSON document.
const StatusFormatVersion = contract.StatusFormatVersion

// serveControl answers GET /status, the queue endpoints and /backup
// (backupctl.go) on the unix socket ln until it is closed; each of more
// adds its own endpoints (the DKIM rotation steps of dkimctl.go, export
// and import).
func serveControl(ln net.Listener, status func(ctx context.Context) (*Status, error), q func() QueueAdmin, backup backupFunc, more ...func(*http.ServeMux)) *http.Server {
	mux := http.NewServeMux()
	handleQueue(mux, q)
	handleBackup(mux, backup)
	for _, add := range more {
		add(mux)
	}
	mux.HandleFunc("GET "+contract.StatusPath, func(w http.ResponseWriter, r *http.Request) {
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
// status (contract.QueryStatus).
func QueryStatus(ctx context.Context, path string) (*Status, error) {
	return contract.QueryStatus(ctx, path)
}
