package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/store"
)

// TestServeQuarantine: a message record the store cannot read (issue 17:
// 1 025 flags, which made `serve` exit with "open store: scan index") no
// longer stops the server; `serve status` reports it.
func TestServeQuarantine(t *testing.T) {
	dir := t.TempDir()
	h, err := auth.HashPassword("pw", auth.Params{Memory: 8 * 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Config{
		FormatVersion: config.FormatVersion,
		Hostname:      "mail.example.test",
		DataDir:       filepath.Join(dir, "data"),
		Listen:        config.Listen{SMTP: "127.0.0.1:0", IMAPS: "127.0.0.1:0"},
		TLS:           config.TLS{Mode: "self-signed"},
		Domains:       []config.Domain{{Name: "example.test"}},
		Users:         []config.User{{Address: "alice@example.test", PasswordHash: h}},
	}
	b, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(dir, "server.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}

	// A store with one message, whose record is then made unreadable.
	ctx := context.Background()
	storeDir := filepath.Join(cfg.DataDir, "store")
	st, err := store.Open(ctx, storeDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	const alice = "alice@example.test"
	if err := st.EnsureUser(ctx, alice, 0); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"one", "two"} {
		if _, err := st.Deliver(ctx, alice, "", strings.NewReader("Subject: "+s+"\r\n\r\nbody\r\n"), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(storeDir, "index.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		msgs := tx.Bucket([]byte("users")).Bucket([]byte(alice)).Bucket([]byte("msgs")).Bucket(binary.BigEndian.AppendUint64(nil, 1))
		k := binary.BigEndian.AppendUint32(nil, 1)
		v := bytes.Clone(msgs.Get(k))
		v = binary.AppendUvarint(v[:len(v)-1], 1025) // the flag count only
		return msgs.Put(k, v)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, _, stderr := serveEnv()
	done := make(chan int, 1)
	go func() { done <- run(sctx, []string{"serve", "-config", cfgPath}, e) }()
	var status contract.Status
	deadline := time.Now().Add(20 * time.Second)
	for {
		se, stdout, serr := serveEnv()
		if run(context.Background(), []string{"serve", "status", "-json", "-config", cfgPath}, se) == exitOK {
			if err := json.Unmarshal([]byte(stdout.String()), &status); err != nil {
				t.Fatalf("status -json output: %v\n%s", err, stdout.String())
			}
			break
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no status within 20s: %s", serr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(status.Quarantine) != 1 || status.Quarantine[0].User != alice || status.Quarantine[0].UID != 1 {
		t.Errorf("status quarantine = %+v, want alice's uid 1", status.Quarantine)
	}
	if len(status.Users) != 1 || status.Users[0].Messages != 1 {
		t.Errorf("status users = %+v, want alice with 1 message", status.Users)
	}
	se, stdout, _ := serveEnv()
	if code := run(context.Background(), []string{"serve", "status", "-socket", filepath.Join(cfg.DataDir, "control.sock")}, se); code != exitOK {
		t.Errorf("serve status (human) exit %d", code)
	}
	if !strings.Contains(stdout.String(), "QUARANTINE     1 corrupt store records") || !strings.Contains(stdout.String(), "uid 1: store: corrupt index record: flag count") {
		t.Errorf("human status lacks the quarantine:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "corrupt index record quarantined") {
		t.Errorf("no log line of the quarantine:\n%s", stderr.String())
	}
	cancel()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not stop within 40s of cancel")
	}
}
