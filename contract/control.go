package contract

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

// The control protocol: HTTP/1.1 on the server's unix control socket
// (config.Config.Control, DefaultControlSocket by default; mode 0600), for
// the server's user only. The provisioner does not dial the socket: it
// runs StatusArgs with the server's executable on the server (over SSH, or
// locally for a lab) and decodes the Status printed.
const (
	// StatusPath answers GET with the Status document.
	StatusPath = "/status"
	// QueuePath answers GET with the queued messages (JSON array).
	QueuePath = "/queue"
	// QueueRetryPath and QueueRemovePath take POST with ?id=<message id>:
	// retry schedules the message (every message when id is empty) for
	// delivery now; remove deletes it. 204 No Content on success.
	QueueRetryPath  = "/queue/retry"
	QueueRemovePath = "/queue/remove"
)

// StatusArgs are the arguments of the server executable that print the
// status of the server configured by configFile as JSON (a Status).
func StatusArgs(configFile string) []string {
	return []string{"serve", "status", "-json", "-config", configFile}
}

// maxStatusBytes bounds the status document read from the socket.
const maxStatusBytes = 16 << 20

// SocketClient is an HTTP client that dials the control socket at path.
func SocketClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// QueryStatus asks the server behind the control socket at path for its
// status.
func QueryStatus(ctx context.Context, path string) (*Status, error) {
	client := SocketClient(path)
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://mailctl"+StatusPath, nil)
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
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusBytes))
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
