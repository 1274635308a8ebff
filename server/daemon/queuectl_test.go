package daemon

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/mailctl/mailctl/server/queue"
)

// memQueue holds queue messages in memory.
type memQueue struct {
	mu      sync.Mutex
	msgs    []queue.Message
	retried []string
}

func (m *memQueue) List(context.Context) ([]queue.Message, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.msgs), nil
}

func (m *memQueue) Retry(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.retried = append(m.retried, id)
	return nil
}

func (m *memQueue) Remove(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.IndexFunc(m.msgs, func(q queue.Message) bool { return q.ID == id })
	if i < 0 {
		return errors.New("queue: no such message")
	}
	m.msgs = slices.Delete(m.msgs, i, i+1)
	return nil
}

func TestQueueControl(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "control.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	q := &memQueue{msgs: []queue.Message{{ID: "m1", From: "a@example.org", Domain: "example.net"}, {ID: "m2", From: "b@example.org", Domain: "example.com"}}}
	srv := serveControl(ln, func(context.Context) (*Status, error) { return &Status{}, nil }, func() QueueAdmin { return q }, nil)
	t.Cleanup(func() { srv.Close() })
	ctx := context.Background()

	msgs, err := QueueList(ctx, path)
	if err != nil || len(msgs) != 2 || msgs[1].Domain != "example.com" {
		t.Fatalf("QueueList = %+v, %v", msgs, err)
	}
	if err := QueueAction(ctx, path, "retry", ""); err != nil {
		t.Fatalf("retry all: %v", err)
	}
	if err := QueueAction(ctx, path, "remove", "m1"); err != nil {
		t.Fatalf("remove m1: %v", err)
	}
	if err := QueueAction(ctx, path, "remove", "nope"); err == nil {
		t.Errorf("removing an unknown message succeeded")
	}
	if err := QueueAction(ctx, path, "remove", ""); err == nil {
		t.Errorf("remove without an id succeeded")
	}
	msgs, _ = QueueList(ctx, path)
	if len(msgs) != 1 || msgs[0].ID != "m2" || len(q.retried) != 1 || q.retried[0] != "" {
		t.Errorf("after remove: %+v, retried %q", msgs, q.retried)
	}
}
