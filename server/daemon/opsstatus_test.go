package daemon_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailctl/mailctl/server/daemon"
)

// servfailDNS runs a loopback DNS server that answers SERVFAIL to
// everything: the queue defers (a temporary failure) instead of bouncing.
func servfailDNS(t *testing.T) string {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: tcp, Handler: handler}} {
		go srv.ActivateAndServe()
		t.Cleanup(func() { srv.Shutdown() })
	}
	return tcp.Addr().String()
}

// TestStatusForOperations checks, through the control socket of a running
// server, what `mailctl status` reads: the disk of the data directory, the
// queue's oldest message and deferral reason, and the last errors logged.
func TestStatusForOperations(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "server.json")
	cfg := baseConfig(t, filepath.Join(dir, "data"))
	cfg.Outbound.DNSServers = []string{servfailDNS(t)}
	cfg.LogLevel = "info"
	writeConfig(t, cfgPath, cfg)
	srv := startServer(t, cfgPath)

	st := srv.status
	if st.Disk == nil || st.Disk.Path != cfg.DataDir || st.Disk.TotalBytes <= 0 || st.Disk.FreeBytes <= 0 ||
		st.Disk.FreeBytes > st.Disk.TotalBytes || st.Disk.UsedBytes <= 0 {
		t.Errorf("disk = %+v, want the file system of %s", st.Disk, cfg.DataDir)
	}
	if st.Queue == nil || st.Queue.Messages != 0 || st.Queue.Oldest != nil {
		t.Errorf("queue of a new server = %+v, want empty", st.Queue)
	}
	if len(st.LastErrors) != 0 {
		t.Errorf("last errors of a new server = %+v, want none", st.LastErrors)
	}

	// A message to a domain whose DNS fails waits in the queue.
	sent := time.Now().UTC()
	out, err := swaks(t, "--server", srv.addr("submission"), "--tls", "--auth", "PLAIN",
		"--auth-user", "alice@example.test", "--auth-password", "alice-pw",
		"--from", "alice@example.test", "--to", "someone@remote.test", "--body", "deferred")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err = daemon.QueryStatus(context.Background(), srv.socket)
		if err != nil {
			t.Fatal(err)
		}
		if st.Queue != nil && len(st.Queue.Deferrals) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no deferral reason within 30s: queue %+v", st.Queue)
		}
		time.Sleep(100 * time.Millisecond)
	}
	q := st.Queue
	if q.Messages != 1 || q.Oldest == nil || q.Oldest.Before(sent.Add(-2*time.Second)) || q.Oldest.After(time.Now().Add(time.Second)) {
		t.Errorf("queue = %+v, want 1 message accepted at about %s", q, sent)
	}
	if q.Deferrals[0].Messages != 1 || q.Deferrals[0].Reason == "" {
		t.Errorf("deferrals = %+v, want one reason for 1 message", q.Deferrals)
	}

	// A failed reload is logged as an error: the status reports it.
	if err := os.WriteFile(cfgPath, []byte(`{"format_version": 1, "hostname": ""}`), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.signal(syscall.SIGHUP)
	deadline = time.Now().Add(10 * time.Second)
	for {
		st, err = daemon.QueryStatus(context.Background(), srv.socket)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.LastErrors) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the failed reload is not among the last errors within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	e := st.LastErrors[len(st.LastErrors)-1]
	if !strings.Contains(e.Message, "reload failed") || e.Level != "ERROR" || !strings.Contains(e.Attrs, "hostname") || e.Time.IsZero() {
		t.Errorf("last error = %+v, want the failed reload with its problems", e)
	}
}
