package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Expunged UIDs (QRESYNC, RFC 7162 section 3.2)
//
// A client that resynchronises a mailbox with QRESYNC tells the server the
// last modification sequence it knows; the server answers with the UIDs
// expunged since (VANISHED). Each transaction that removes messages from a
// mailbox (Expunge, Move) records the removed UIDs under the mailbox's new
// ModSeq, in a per-user bucket "gone" with a sub-bucket per mailbox ID:
//
//	8-byte big-endian modseq -> UID ranges: uvarint (start - previous end),
//	                             uvarint (length - 1), repeated
//	"meta"                   -> uvarint floor, uvarint records, uvarint bytes
//
// The records of a mailbox are bounded (maxGoneRecords, maxGoneBytes): the
// oldest are dropped, and the floor rises to the ModSeq of the newest one
// dropped. The records are complete for a client whose ModSeq is at least
// the floor; for an older one the caller must fall back to "every UID that
// is not in the mailbox" (Vanished reports which). A mailbox created before
// the records existed has no meta: its floor is its ModSeq when it is first
// asked about or first records an expunge.

var (
	bucketGone  = []byte("gone")
	keyGoneMeta = []byte("meta")
)

// Bounds of the expunge records of one mailbox (variables for tests).
var (
	maxGoneRecords = 4096
	maxGoneBytes   = 64 << 10
)

type goneMeta struct {
	floor, records, bytes uint64
}

func decodeGoneMeta(v []byte) (goneMeta, bool) {
	var m goneMeta
	var n int
	for _, p := range []*uint64{&m.floor, &m.records, &m.bytes} {
		*p, n = binary.Uvarint(v)
		if n <= 0 {
			return goneMeta{}, false
		}
		v = v[n:]
	}
	return m, true
}

func (m goneMeta) encode() []byte {
	b := binary.AppendUvarint(nil, m.floor)
	b = binary.AppendUvarint(b, m.records)
	return binary.AppendUvarint(b, m.bytes)
}

// goneBucket returns the expunge records of a mailbox, creating them when
// create is set (with floor as the floor of a new record set).
func (u *userTx) goneBucket(mailboxID uint64, create bool, floor uint64) (*bolt.Bucket, error) {
	root := u.b.Bucket(bucketGone)
	if root == nil {
		if !create {
			return nil, nil
		}
		var err error
		if root, err = u.b.CreateBucket(bucketGone); err != nil {
			return nil, err
		}
	}
	b := root.Bucket(mailboxKey(mailboxID))
	if b == nil && create {
		var err error
		if b, err = root.CreateBucket(mailboxKey(mailboxID)); err != nil {
			return nil, err
		}
		if err := b.Put(keyGoneMeta, goneMeta{floor: floor}.encode()); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// startGone begins the (empty) expunge records of a new mailbox: complete
// from its creation.
func (u *userTx) startGone(mailboxID uint64) error {
	_, err := u.goneBucket(mailboxID, true, 0)
	return err
}

func (u *userTx) deleteGoneBucket(mailboxID uint64) error {
	root := u.b.Bucket(bucketGone)
	if root == nil || root.Bucket(mailboxKey(mailboxID)) == nil {
		return nil
	}
	return root.DeleteBucket(mailboxKey(mailboxID))
}

func modseqKey(m uint64) []byte { return binary.BigEndian.AppendUint64(nil, m) }

// encodeUIDRanges encodes ascending UIDs as ranges.
func encodeUIDRanges(uids []uint32) []byte {
	var b []byte
	prev := uint32(0)
	for i := 0; i < len(uids); {
		j := i
		for j+1 < len(uids) && uids[j+1] == uids[j]+1 {
			j++
		}
		b = binary.AppendUvarint(b, uint64(uids[i]-prev))
		b = binary.AppendUvarint(b, uint64(j-i))
		prev = uids[j]
		i = j + 1
	}
	return b
}

// decodeUIDRanges calls fn for each range [lo, hi] of an encoded record.
func decodeUIDRanges(v []byte, fn func(lo, hi uint32)) error {
	prev := uint64(0)
	for len(v) > 0 {
		d, n := binary.Uvarint(v)
		if n <= 0 {
			return fmt.Errorf("%w: expunge record", errCorrupt)
		}
		v = v[n:]
		l, n := binary.Uvarint(v)
		if n <= 0 {
			return fmt.Errorf("%w: expunge record", errCorrupt)
		}
		v = v[n:]
		lo := prev + d
		hi := lo + l
		if hi > 1<<32-1 {
			return fmt.Errorf("%w: expunge record", errCorrupt)
		}
		fn(uint32(lo), uint32(hi))
		prev = hi
	}
	return nil
}

// recordGone records that uids (ascending) left mailbox r at r.ModSeq,
// whose value before this transaction was prev.
func (u *userTx) recordGone(r *mailboxRecord, prev uint64, uids []uint32) error {
	if len(uids) == 0 {
		return nil
	}
	b, err := u.goneBucket(r.ID, true, prev)
	if err != nil {
		return err
	}
	meta, ok := decodeGoneMeta(b.Get(keyGoneMeta))
	if !ok {
		meta = goneMeta{floor: prev}
	}
	key := modseqKey(r.ModSeq)
	v := encodeUIDRanges(uids)
	if old := b.Get(key); old != nil {
		// A second removal within one transaction (a MOVE within the
		// mailbox): one record for both.
		meta.records--
		meta.bytes -= uint64(len(old))
		var all []uint32
		if err := decodeUIDRanges(old, func(lo, hi uint32) {
			for x := uint64(lo); x <= uint64(hi); x++ {
				all = append(all, uint32(x))
			}
		}); err != nil {
			return err
		}
		v = encodeUIDRanges(sortedUIDs(append(all, uids...)))
	}
	if err := b.Put(key, v); err != nil {
		return err
	}
	meta.records++
	meta.bytes += uint64(len(v))
	// Drop the oldest records beyond the bounds (the newest stays).
	var drop [][]byte
	c := b.Cursor()
	for k, old := c.First(); k != nil && meta.records > 1 && (meta.records > uint64(maxGoneRecords) || meta.bytes > uint64(maxGoneBytes)); k, old = c.Next() {
		if len(k) != 8 {
			continue
		}
		meta.floor = max(meta.floor, binary.BigEndian.Uint64(k))
		meta.records--
		meta.bytes -= uint64(len(old))
		drop = append(drop, bytes.Clone(k))
	}
	for _, k := range drop {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return b.Put(keyGoneMeta, meta.encode())
}

// Vanished returns the UIDs of the messages that left the mailbox (by ID)
// after modification sequence since, as ascending disjoint ranges [lo, hi].
// complete is false when the records do not go back that far: the UIDs
// returned are then only those known, and the caller must treat every UID
// not in the mailbox as possibly vanished.
func (s *Store) Vanished(ctx context.Context, user string, mailboxID uint64, since uint64) (ranges [][2]uint32, complete bool, err error) {
	err = s.view(ctx, user, func(u *userTx) error {
		ranges, complete = nil, false
		b, err := u.goneBucket(mailboxID, false, 0)
		if err != nil {
			return err
		}
		if b == nil {
			return nil // never recorded: nothing is known
		}
		meta, ok := decodeGoneMeta(b.Get(keyGoneMeta))
		if !ok {
			return fmt.Errorf("%w: expunge records of mailbox %d", errCorrupt, mailboxID)
		}
		complete = since >= meta.floor
		c := b.Cursor()
		var uids []uint32
		for k, v := c.Seek(modseqKey(since + 1)); k != nil; k, v = c.Next() {
			if len(k) != 8 {
				continue
			}
			if err := decodeUIDRanges(v, func(lo, hi uint32) {
				for x := uint64(lo); x <= uint64(hi); x++ {
					uids = append(uids, uint32(x))
				}
			}); err != nil {
				return err
			}
		}
		uids = sortedUIDs(uids)
		for i := 0; i < len(uids); {
			j := i
			for j+1 < len(uids) && uids[j+1] <= uids[j]+1 {
				j++
			}
			ranges = append(ranges, [2]uint32{uids[i], uids[j]})
			i = j + 1
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("read expunged UIDs of mailbox %d of %q: %w", mailboxID, user, err)
	}
	return ranges, complete, nil
}

// goneQuarantined records messages moved to the quarantine (records the
// reader cannot decode) as gone from their mailbox, under a new ModSeq:
// clients that have them learn that they vanished. A mailbox whose own
// record is not readable is left alone.
func goneQuarantined(ub *bolt.Bucket, mailboxID uint64, uids []uint32) error {
	u := &userTx{b: ub}
	mboxes := ub.Bucket(bucketMailboxes)
	var name []byte
	var rec mailboxRecord
	if err := mboxes.ForEach(func(k, v []byte) error {
		var r mailboxRecord
		if json.Unmarshal(v, &r) == nil && r.ID == mailboxID {
			name, rec = bytes.Clone(k), r
		}
		return nil
	}); err != nil || name == nil {
		return err
	}
	prev := rec.ModSeq
	rec.ModSeq++
	if err := u.recordGone(&rec, prev, sortedUIDs(uids)); err != nil {
		return err
	}
	return u.putMailbox(string(name), &rec)
}
