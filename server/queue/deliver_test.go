package queue_test

import (
	"context"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/queue"
)

// TestLocalDSNStatus bounces local deliveries that fail for good and reads
// the RFC 3463 status in the DSN the sender gets: a full mailbox is 5.2.2,
// an address without a mailbox 5.1.1.
func TestLocalDSNStatus(t *testing.T) {
	n := startNode(t, nodeConfig{domain: "a.test", host: "mx.a.test", ip: "127.0.0.1", port: freePort(t, "127.0.0.1"),
		users: []string{"alice@a.test", "full@a.test"}})
	// A quota of 10 bytes: no message fits.
	if err := n.store.EnsureUser(context.Background(), "full@a.test", 10); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		rcpt, status, diag string
	}{
		{"full@a.test", "5.2.2", "quota exceeded"},
		{"nobody@a.test", "5.1.1", "nobody@a.test"},
	} {
		t.Run(tc.rcpt, func(t *testing.T) {
			enqueue(t, n, "alice@a.test", tc.rcpt)
			d := lastDSN(t, n, "alice@a.test", i+1)
			if len(d.Recipients) != 1 {
				t.Fatalf("DSN recipients = %+v, want 1", d.Recipients)
			}
			r := d.Recipients[0]
			if r.Addr != tc.rcpt || r.Status != tc.status || r.Action != queue.ActionFailed || !strings.Contains(r.Diagnostic, tc.diag) {
				t.Errorf("DSN recipient = %+v, want %s failed %s with a diagnostic containing %q", r, tc.rcpt, tc.status, tc.diag)
			}
			waitQueueEmpty(t, n)
		})
	}
	if msgs := n.messages(t, "full@a.test", "INBOX"); len(msgs) != 0 {
		t.Errorf("full@a.test holds %d messages, want 0", len(msgs))
	}
}
