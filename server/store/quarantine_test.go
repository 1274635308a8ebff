package store_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mailctl/mailctl/server/store"
)

// TestQuarantine: records that the reader cannot decode, written straight
// into the index file (the record of issue 17, with 1 025 flags; a mailbox
// record and a user record that are not JSON), no longer stop Open: they
// are moved to the quarantine directory, with the message's body, and
// every other message is served.
func TestQuarantine(t *testing.T) { forBodyKinds(t, testQuarantine) }

func testQuarantine(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const bob, carol, dave = "bob@example.test", "carol@example.test", "dave@example.test"
	st := openStore(t, dir)
	for _, u := range []string{alice, bob, carol, dave} {
		if err := st.EnsureUser(ctx, u, 0); err != nil {
			t.Fatal(err)
		}
	}
	deliver(t, st, "", msg("one"))
	deliver(t, st, "", msg("two"))
	if _, err := st.Deliver(ctx, bob, "Junk", strings.NewReader(msg("spam")), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Deliver(ctx, carol, "", strings.NewReader(msg("hello carol")), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	inbox, err := st.Mailbox(ctx, alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := bolt.Open(filepath.Join(dir, "index.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		users := tx.Bucket([]byte("users"))
		key := binary.BigEndian.AppendUint64(nil, inbox.ID)
		msgs := users.Bucket([]byte(alice)).Bucket([]byte("msgs")).Bucket(key)
		v := bytes.Clone(msgs.Get(binary.BigEndian.AppendUint32(nil, 1)))
		if v[len(v)-1] != 0 {
			return fmt.Errorf("record %x does not end in a flag count of 0", v)
		}
		v = binary.AppendUvarint(v[:len(v)-1], 1025)
		for i := 0; i < 1025; i++ {
			k := fmt.Sprintf("k%d", i)
			v = append(binary.AppendUvarint(v, uint64(len(k))), k...)
		}
		if err := msgs.Put(binary.BigEndian.AppendUint32(nil, 1), v); err != nil {
			return err
		}
		if err := users.Bucket([]byte(bob)).Bucket([]byte("mailboxes")).Put([]byte("Junk"), []byte("{not json")); err != nil {
			return err
		}
		if err := users.Bucket([]byte(dave)).DeleteBucket([]byte("msgs")); err != nil {
			return err
		}
		return users.Bucket([]byte(carol)).Put([]byte("info"), []byte("garbage"))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	st = openStore(t, dir)
	// alice's message, bob's mailbox, carol's user record; dave's user
	// record (no message bucket) and each of his mailboxes.
	q := st.Quarantined()
	want := 3 + 1 + len(store.DefaultMailboxes)
	if len(q) != want {
		t.Fatalf("Quarantined = %+v, want %d entries", q, want)
	}
	kinds := map[string]store.QuarantineEntry{}
	for _, e := range q {
		if e.User != dave {
			kinds[e.Kind] = e
		}
	}
	if e := kinds["message"]; e.User != alice || e.UID != 1 || e.Mailbox != "INBOX" || !strings.Contains(e.Error, "flag count") {
		t.Errorf("message entry = %+v", e)
	}
	if e := kinds["mailbox"]; e.User != bob || e.Mailbox != "Junk" {
		t.Errorf("mailbox entry = %+v", e)
	}
	if e := kinds["user"]; e.User != carol {
		t.Errorf("user entry = %+v", e)
	}
	body, err := os.ReadFile(filepath.Join(dir, "quarantine", kinds["message"].BodyFile))
	if err != nil || string(body) != msg("one") {
		t.Errorf("quarantined body = %q, %v", body, err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "quarantine", kinds["message"].File))
	if err != nil || !bytes.Contains(raw, []byte(`"record"`)) || !bytes.Contains(raw, []byte("Subject: one")) {
		t.Errorf("quarantine entry file = %.300s, %v", raw, err)
	}

	// Everyone else is served, with counts that match what is left.
	mb, msgs, err := st.Messages(ctx, alice, "INBOX")
	if err != nil || len(msgs) != 1 || msgs[0].UID != 2 || mb.Messages != 1 {
		t.Fatalf("alice's INBOX: %+v, %d messages, %v", mb, len(msgs), err)
	}
	// The quarantined message vanished for clients that had it (QRESYNC).
	if gone, complete, err := st.Vanished(ctx, alice, inbox.ID, inbox.ModSeq); err != nil || !complete || len(gone) != 1 || gone[0] != [2]uint32{1, 1} || mb.ModSeq <= inbox.ModSeq {
		t.Errorf("after the quarantine: Vanished(since %d) = %v complete %v, %v; mailbox ModSeq %d", inbox.ModSeq, gone, complete, err, mb.ModSeq)
	}
	if got := readBody(t, st, msgs[0]); got != msg("two") {
		t.Errorf("body of uid 2 = %q", got)
	}
	if used, n, err := st.Usage(ctx, alice); err != nil || n != 1 || used != int64(len(msg("two"))) {
		t.Errorf("Usage(alice) = %d, %d, %v", used, n, err)
	}
	mboxes, err := st.Mailboxes(ctx, bob)
	if err != nil || len(mboxes) != len(store.DefaultMailboxes)-1 {
		t.Errorf("Mailboxes(bob) = %v, %v", mboxes, err)
	}
	if _, msgs, err := st.Messages(ctx, carol, "INBOX"); err != nil || len(msgs) != 1 {
		t.Errorf("carol's INBOX: %d messages, %v", len(msgs), err)
	}
	if used, n, err := st.Usage(ctx, carol); err != nil || n != 1 || used != int64(len(msg("hello carol"))) {
		t.Errorf("Usage(carol) = %d, %d, %v", used, n, err)
	}
	if err := st.CreateMailbox(ctx, carol, "New", ""); err != nil {
		t.Errorf("CreateMailbox(carol) = %v", err)
	}
	if err := st.EnsureUser(ctx, dave, 0); err != nil {
		t.Fatalf("EnsureUser(dave) = %v", err)
	}
	if _, err := st.Deliver(ctx, dave, "", strings.NewReader(msg("hello dave")), nil, time.Time{}); err != nil {
		t.Errorf("Deliver to dave = %v", err)
	}
	if uid := deliver(t, st, "", msg("three")); uid != 3 {
		t.Errorf("next UID = %d, want 3", uid)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// The quarantine stays listed until the operator clears it; nothing
	// new is found.
	st = openStore(t, dir)
	defer st.Close()
	if q := st.Quarantined(); len(q) != want {
		t.Errorf("after reopening, Quarantined = %d entries, want %d", len(q), want)
	}
}
