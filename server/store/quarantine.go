package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Quarantine. One record the reader cannot decode (written by an older
// version without the writer's checks, or damaged on disk) must not stop
// the whole server: Open moves it out of the index into a file of the
// quarantine directory, for an operator to inspect, logs it, and serves
// everything else.
//
//	quarantine/<time>-<n>.json   the entry (QuarantineEntry), with the raw
//	                             record and the cached header
//	quarantine/<time>-<n>.eml    the message body, when the record still
//	                             said where it was
//	quarantine/orphans/<blob>    body files no record refers to, kept
//	                             rather than removed when a record whose
//	                             body could not be told was quarantined
//
// What is quarantined: a message record that decodeMsg refuses (the
// mailbox's counts are made again from the records left), a mailbox record
// that cannot be decoded or has no message bucket (its messages stay in the
// index, out of sight, and are not counted), a user record that cannot be
// decoded (made again from the user's mailboxes; the quota is set again by
// EnsureUser). Files stay until the operator removes them; Quarantined
// lists them.
const quarantineDir = "quarantine"

// QuarantineEntry describes a record moved out of the index by Open.
type QuarantineEntry struct {
	Time      time.Time `json:"time"`
	User      string    `json:"user"`
	Kind      string    `json:"kind"` // "message", "mailbox" or "user"
	Mailbox   string    `json:"mailbox,omitempty"`
	MailboxID uint64    `json:"mailbox_id,omitempty"`
	UID       uint32    `json:"uid,omitempty"`
	Error     string    `json:"error"`
	File      string    `json:"file"`                // of this entry, in the quarantine directory
	BodyFile  string    `json:"body_file,omitempty"` // of the message body, if saved
	Record    []byte    `json:"record,omitempty"`    // the raw index value
	Header    string    `json:"header,omitempty"`    // the cached header, if any
}

// Quarantined returns the entries of the quarantine directory as Open
// found them (without their raw record and header), oldest first.
func (s *Store) Quarantined() []QuarantineEntry {
	return append([]QuarantineEntry(nil), s.quarantined...)
}

// badRecord is a record found corrupt by Open's scan.
type badRecord struct {
	e         QuarantineEntry
	key       []byte // within the mailboxes bucket (mailbox) or the mailbox's messages (message)
	blob      blobID // message body file, when known
	body      uint64 // message body in the index, when known
	bodyKnown bool
}

// scanUser checks the records of one user, calling ref for each body file
// referenced, and returns those that cannot be read.
func scanUser(tx *bolt.Tx, user []byte, ref func(blobID, int64)) []badRecord {
	var bad []badRecord
	ub := tx.Bucket(bucketUsers).Bucket(user)
	var info userRecord
	if err := json.Unmarshal(ub.Get(keyInfo), &info); err != nil {
		bad = append(bad, badRecord{e: QuarantineEntry{User: string(user), Kind: "user",
			Error: fmt.Sprintf("user record: %v", err), Record: bytes.Clone(ub.Get(keyInfo))}})
	}
	msgs := ub.Bucket(bucketMsgs)
	if msgs == nil || ub.Bucket(bucketMailboxes) == nil {
		bad = append(bad, badRecord{e: QuarantineEntry{User: string(user), Kind: "user",
			Error: "user record: mailbox or message bucket missing", Record: bytes.Clone(ub.Get(keyInfo))}})
	}
	names := map[uint64]string{}
	if mb := ub.Bucket(bucketMailboxes); mb != nil {
		mb.ForEach(func(k, v []byte) error {
			var r mailboxRecord
			err := json.Unmarshal(v, &r)
			if err == nil && (msgs == nil || msgs.Bucket(mailboxKey(r.ID)) == nil) {
				err = errors.New("no message bucket")
			}
			if err != nil {
				bad = append(bad, badRecord{key: bytes.Clone(k), e: QuarantineEntry{User: string(user), Kind: "mailbox",
					Mailbox: string(k), MailboxID: r.ID, Error: fmt.Sprintf("mailbox record: %v", err), Record: bytes.Clone(v)}})
				return nil
			}
			names[r.ID] = string(k)
			return nil
		})
	}
	if msgs == nil {
		return bad
	}
	msgs.ForEachBucket(func(mbox []byte) error {
		id := binary.BigEndian.Uint64(mbox)
		return msgs.Bucket(mbox).ForEach(func(k, v []byte) error {
			if v == nil || len(k) != 4 {
				return nil // not a message record
			}
			m, err := decodeMsg(v)
			if err == nil {
				if m.Body == 0 {
					ref(m.Blob, m.Size)
				}
				return nil
			}
			b := badRecord{key: bytes.Clone(k), e: QuarantineEntry{User: string(user), Kind: "message",
				Mailbox: names[id], MailboxID: id, UID: binary.BigEndian.Uint32(k), Error: err.Error(), Record: bytes.Clone(v)}}
			// decodeMsg fills m as far as it read: the body is known
			// when the record got past it.
			if len(v) > 0 && v[0] == msgRecordVersionInline && m.Body != 0 {
				b.body, b.bodyKnown = m.Body, true
			} else if len(v) > 0 && v[0] == msgRecordVersion && m.Blob != (blobID{}) {
				b.blob, b.bodyKnown = m.Blob, true
				ref(m.Blob, 0) // kept until the quarantine has its copy
			}
			if hb := ub.Bucket(bucketHdrs); hb != nil {
				if h := hb.Bucket(mbox); h != nil {
					hdr, _ := decodeHeader(h.Get(k))
					b.e.Header = string(hdr)
				}
			}
			bad = append(bad, b)
			return nil
		})
	})
	return bad
}

// quarantine saves bad records to the quarantine directory, then removes
// them from the index and makes the counts of their mailboxes and users
// again. The files are durable before the index changes: a crash in
// between quarantines the same records again at the next Open.
func (s *Store) quarantine(ctx context.Context, bad []badRecord) error {
	dir := filepath.Join(s.dir, quarantineDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	now := time.Now().UTC()
	for i := range bad {
		b := &bad[i]
		b.e.Time = now
		base := fmt.Sprintf("%s-%d", now.Format("20060102T150405.000000000Z"), i)
		b.e.File = base + ".json"
		if b.bodyKnown {
			body := filepath.Join(dir, base+".eml")
			if err := s.saveBody(b, body); err != nil {
				s.logger.WarnContext(ctx, "store quarantine: body not saved", "user", b.e.User, "uid", b.e.UID, "err", err)
				b.body = 0 // left where it is
			} else {
				b.e.BodyFile = base + ".eml"
			}
		}
		v, err := json.MarshalIndent(&b.e, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFileSync(filepath.Join(dir, b.e.File), v); err != nil {
			return fmt.Errorf("save quarantined record: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		users := map[string]bool{}
		for _, b := range bad {
			users[b.e.User] = true
			ub := tx.Bucket(bucketUsers).Bucket([]byte(b.e.User))
			switch b.e.Kind {
			case "mailbox":
				if err := ub.Bucket(bucketMailboxes).Delete(b.key); err != nil {
					return err
				}
			case "message":
				mb := ub.Bucket(bucketMsgs).Bucket(mailboxKey(b.e.MailboxID))
				if err := mb.Delete(b.key); err != nil {
					return err
				}
				if hb := ub.Bucket(bucketHdrs); hb != nil {
					if h := hb.Bucket(mailboxKey(b.e.MailboxID)); h != nil {
						if err := h.Delete(b.key); err != nil {
							return err
						}
					}
				}
				if b.body != 0 {
					if err := deleteBody(tx, b.body); err != nil {
						return err
					}
				}
			}
		}
		type mbKey struct {
			user string
			id   uint64
		}
		gone := map[mbKey][]uint32{}
		for _, b := range bad {
			if b.e.Kind == "message" {
				k := mbKey{b.e.User, b.e.MailboxID}
				gone[k] = append(gone[k], b.e.UID)
			}
		}
		for k, uids := range gone {
			if err := goneQuarantined(tx.Bucket(bucketUsers).Bucket([]byte(k.user)), k.id, uids); err != nil {
				return fmt.Errorf("user %q: %w", k.user, err)
			}
		}
		for user := range users {
			if err := recount(tx.Bucket(bucketUsers).Bucket([]byte(user))); err != nil {
				return fmt.Errorf("user %q: %w", user, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove quarantined records from the index: %w", err)
	}
	for _, b := range bad {
		s.logger.ErrorContext(ctx, "store: corrupt index record quarantined", "user", b.e.User, "kind", b.e.Kind,
			"mailbox", b.e.Mailbox, "uid", b.e.UID, "err", b.e.Error, "file", filepath.Join(dir, b.e.File))
	}
	return nil
}

// saveBody copies the body of a quarantined message into path: a hard
// link to its file, or the bytes kept in the index.
func (s *Store) saveBody(b *badRecord, path string) error {
	if b.body == 0 {
		return os.Link(s.blobPath(b.blob), path)
	}
	var body []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		prefix := bodyKey(b.body, 0)[:8]
		c := tx.Bucket(bucketBodies).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			body = append(body, v...)
		}
		return nil
	}); err != nil {
		return err
	}
	return writeFileSync(path, body)
}

// recount makes the counts of a user's mailboxes and of the user again
// from the records left.
func recount(ub *bolt.Bucket) error {
	var info userRecord
	infoOK := json.Unmarshal(ub.Get(keyInfo), &info) == nil
	info.Used, info.Messages = 0, 0
	// A user record without its buckets gets them again, empty.
	for _, name := range [][]byte{bucketMailboxes, bucketMsgs} {
		if _, err := ub.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	mboxes := ub.Bucket(bucketMailboxes)
	type kv struct {
		k []byte
		r mailboxRecord
	}
	var all []kv
	if err := mboxes.ForEach(func(k, v []byte) error {
		var r mailboxRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		all = append(all, kv{bytes.Clone(k), r})
		return nil
	}); err != nil {
		return err
	}
	for _, m := range all {
		r := m.r
		r.Messages, r.Size = 0, 0
		if err := ub.Bucket(bucketMsgs).Bucket(mailboxKey(r.ID)).ForEach(func(k, v []byte) error {
			if rec, err := decodeMsg(v); err == nil {
				r.Messages++
				r.Size += rec.Size
			}
			return nil
		}); err != nil {
			return err
		}
		if r != m.r {
			r.ModSeq++
		}
		v, err := json.Marshal(&r)
		if err != nil {
			return err
		}
		if err := mboxes.Put(m.k, v); err != nil {
			return err
		}
		info.Used += r.Size
		info.Messages += r.Messages
		if !infoOK {
			info.NextMailboxID = max(info.NextMailboxID, r.ID)
			info.LastUIDValidity = max(info.LastUIDValidity, r.UIDValidity)
		}
	}
	if !infoOK {
		// Mailbox IDs of mailboxes quarantined are not to be reused.
		ub.Bucket(bucketMsgs).ForEachBucket(func(k []byte) error {
			info.NextMailboxID = max(info.NextMailboxID, binary.BigEndian.Uint64(k))
			return nil
		})
	}
	v, err := json.Marshal(&info)
	if err != nil {
		return err
	}
	return ub.Put(keyInfo, v)
}

// loadQuarantine reads the entries of the quarantine directory.
func (s *Store) loadQuarantine() error {
	dir := filepath.Join(s.dir, quarantineDir)
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	sort.Strings(names)
	s.quarantined = nil
	for _, name := range names {
		v, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		var e QuarantineEntry
		if err := json.Unmarshal(v, &e); err != nil {
			e = QuarantineEntry{Error: fmt.Sprintf("unreadable entry: %v", err)}
		}
		e.File, e.Record, e.Header = filepath.Base(name), nil, ""
		s.quarantined = append(s.quarantined, e)
	}
	if n := len(s.quarantined); n > 0 {
		s.logger.Warn("store: records in quarantine, see the files", "count", n, "dir", dir)
	}
	return nil
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// disposeOrphan is where removeOrphans puts a body file no record refers
// to: nowhere (removed), or the quarantine when keep is set.
func (s *Store) disposeOrphan(path string, keep bool) error {
	if !keep {
		return os.Remove(path)
	}
	dir := filepath.Join(s.dir, quarantineDir, "orphans")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Rename(path, filepath.Join(dir, filepath.Base(path)))
}
