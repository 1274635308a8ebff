package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/server/queue"
)

// QueueAdmin is what the control socket needs of the outbound queue.
type QueueAdmin interface {
	List(ctx context.Context) ([]queue.Message, error)
	// Retry schedules id (every message when "") for delivery now.
	Retry(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
}

// handleQueue adds the queue endpoints to the control socket's mux
// (contract.QueuePath, QueueRetryPath, QueueRemovePath).
func handleQueue(mux *http.ServeMux, q func() QueueAdmin) {
	mux.HandleFunc("GET "+contract.QueuePath, func(w http.ResponseWriter, r *http.Request) {
		msgs, err := q().List(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if msgs == nil {
			msgs = []queue.Message{}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(msgs)
	})
	for _, p := range []string{contract.QueueRetryPath, contract.QueueRemovePath} {
		mux.HandleFunc("POST "+p, func(w http.ResponseWriter, r *http.Request) {
			id := r.URL.Query().Get("id")
			var err error
			if p == contract.QueueRetryPath {
				err = q().Retry(r.Context(), id)
			} else if id == "" {
				http.Error(w, "remove needs a message id", http.StatusBadRequest)
				return
			} else {
				err = q().Remove(r.Context(), id)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})
	}
}

func controlClient(path string) *http.Client {
	c := contract.SocketClient(path)
	c.Timeout = 30 * time.Second
	return c
}

// QueueList lists the outbound queue of the server behind the control
// socket at path.
func QueueList(ctx context.Context, path string) ([]queue.Message, error) {
	c := controlClient(path)
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://mailctl"+contract.QueuePath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query control socket %q (is the server running?): %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read queue: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("list queue: %s: %s", resp.Status, body)
	}
	var msgs []queue.Message
	if err := json.Unmarshal(body, &msgs); err != nil {
		return nil, fmt.Errorf("decode queue: %w", err)
	}
	return msgs, nil
}

// QueueAction runs "retry" (id "" = every message) or "remove" on the
// server behind the control socket at path.
func QueueAction(ctx context.Context, path, action, id string) error {
	c := controlClient(path)
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "POST", "http://mailctl"+contract.QueuePath+"/"+url.PathEscape(action)+"?id="+url.QueryEscape(id), nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("query control socket %q (is the server running?): %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("queue %s %s: %s: %s", action, id, resp.Status, body)
	}
	return nil
}
