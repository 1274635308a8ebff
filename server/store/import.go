package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Import: writing mailboxes copied from another store (server/storecopy,
// `mailctl store copy`) with the UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and
// the UIDs, MODSEQs, flags and internal dates of the source, so that IMAP
// clients that cached them see nothing changed.
//
// A mailbox is imported into a message bucket under a new mailbox ID that
// no mailbox record names yet, in commits of bounded size (importBatch),
// and the mailbox record comes last, with the counters of the user, in
// one commit: readers see the mailbox complete or not at all. Until then
// the user's bucket "importing" holds the ID; an import interrupted
// (context cancelled, crash) leaves it there, and the next ImportUser or
// ImportMailbox of that user drops what it had written.
var bucketImporting = []byte("importing")

// ErrImportConflict is returned by ImportMailbox when the destination
// already holds a mailbox of that name that is neither empty nor the
// complete copy of the source.
var ErrImportConflict = errors.New("store: destination mailbox differs from the source")

// importBatch bounds the records (and bytes of bodies kept in the index)
// of one import commit.
var (
	importBatchMessages       = 2000
	importBatchBytes    int64 = 16 << 20
)

// CheckImport tells what an import of src does with dst, the mailbox of
// the same name already at the destination: skip it (the complete copy:
// same UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and number of messages), or
// replace it (empty and never used: UIDNEXT 1), or neither (an error
// wrapping ErrImportConflict, one line, telling to drop it).
func CheckImport(dst, src Mailbox) (skip bool, err error) {
	switch {
	case dst.UIDValidity == src.UIDValidity && dst.UIDNext == src.UIDNext && dst.ModSeq == src.ModSeq && dst.Messages == src.Messages:
		return true, nil
	case dst.Messages == 0 && dst.UIDNext <= 1:
		return false, nil
	}
	return false, fmt.Errorf("%w: destination has UIDVALIDITY %d, UIDNEXT %d, HIGHESTMODSEQ %d, %d messages; source %d, %d, %d, %d messages: drop the destination mailbox (or the whole destination) and copy again",
		ErrImportConflict, dst.UIDValidity, dst.UIDNext, dst.ModSeq, dst.Messages, src.UIDValidity, src.UIDNext, src.ModSeq, src.Messages)
}

// CheckImportMessage reports whether m may be imported into mb after a
// message of UID prev (0 for the first): UIDs ascending and below
// UIDNEXT, MODSEQ between 1 and HIGHESTMODSEQ.
func CheckImportMessage(mb Mailbox, prev uint32, m Message) error {
	if m.UID <= prev || m.UID >= mb.UIDNext {
		return fmt.Errorf("message UID %d out of order or not below UIDNEXT %d (previous %d)", m.UID, mb.UIDNext, prev)
	}
	if m.ModSeq < 1 || m.ModSeq > mb.ModSeq {
		return fmt.Errorf("message UID %d: MODSEQ %d not in 1..HIGHESTMODSEQ %d", m.UID, m.ModSeq, mb.ModSeq)
	}
	return nil
}

// ImportUser creates user, when absent, without any mailbox (the import
// brings them, INBOX included), and sets its quota in bytes (0 =
// unlimited). It drops what an interrupted import of the user left.
func (s *Store) ImportUser(ctx context.Context, user string, quotaBytes int64) error {
	if user == "" {
		return fmt.Errorf("import user %q: invalid name", user)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		u, err := createUser(tx, user)
		if err != nil {
			return err
		}
		u.info.Quota = quotaBytes
		return u.putInfo()
	})
	if err == nil {
		err = s.dropPartialImports(ctx, user)
	}
	if err != nil {
		return fmt.Errorf("import user %q: %w", user, err)
	}
	return nil
}

// dropPartialImports removes the messages of imports of user that did not
// finish.
func (s *Store) dropPartialImports(ctx context.Context, user string) error {
	// Mostly there is none: a read, not a commit (and its fsync).
	var partial bool
	if err := s.view(ctx, user, func(u *userTx) error {
		if b := u.b.Bucket(bucketImporting); b != nil {
			k, _ := b.Cursor().First()
			partial = k != nil
		}
		return nil
	}); err != nil || !partial {
		return err
	}
	var blobs []blobID
	var inline int
	err := s.update(ctx, user, func(u *userTx) error {
		blobs, inline = blobs[:0], 0
		imp := u.b.Bucket(bucketImporting)
		if imp == nil {
			return nil
		}
		var ids [][]byte
		if err := imp.ForEach(func(k, _ []byte) error {
			ids = append(ids, bytes.Clone(k))
			return nil
		}); err != nil {
			return err
		}
		for _, k := range ids {
			if len(k) != 8 {
				continue
			}
			id := binary.BigEndian.Uint64(k)
			if b := u.b.Bucket(bucketMsgs).Bucket(k); b != nil {
				if err := b.ForEach(func(_, v []byte) error {
					m, err := decodeMsg(v)
					if err != nil {
						return err
					}
					if m.Body != 0 {
						inline++
						return deleteBody(u.tx, m.Body)
					}
					blobs = append(blobs, m.Blob)
					return nil
				}); err != nil {
					return err
				}
				if err := u.b.Bucket(bucketMsgs).DeleteBucket(k); err != nil {
					return err
				}
			}
			if err := u.deleteHeaderBucket(id); err != nil {
				return err
			}
		}
		return u.b.DeleteBucket(bucketImporting)
	})
	if err != nil {
		return fmt.Errorf("drop interrupted import: %w", err)
	}
	s.removeBlobs(ctx, blobs)
	s.deletedInline(inline)
	return nil
}

// ImportMailbox writes the mailbox mb of user (which ImportUser made)
// with mb's UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ (ModSeq), special use,
// subscription and \Recent mark, and the messages next returns, until it
// returns io.EOF: each with its UID, MODSEQ, flags, internal date and
// body (read before next is called again). Messages must come in
// ascending UID order, below UIDNEXT, with MODSEQs up to HIGHESTMODSEQ,
// mb.Messages of them. The quota is not checked: the source's messages
// are kept as they are.
//
// A mailbox of that name at the destination is replaced when empty and
// never used (EnsureUser's), skipped (skipped true, next never called)
// when it is the complete copy, and refused otherwise (CheckImport).
// Expunge records start at HIGHESTMODSEQ: a QRESYNC client that knew an
// older state gets the full list of UIDs that remain.
func (s *Store) ImportMailbox(ctx context.Context, user string, mb Mailbox, next func() (Message, io.Reader, error)) (skipped bool, err error) {
	name, err := normalizeMailbox(mb.Name)
	if err == nil && (mb.UIDValidity == 0 || mb.UIDNext == 0 || mb.ModSeq == 0) {
		err = fmt.Errorf("UIDVALIDITY %d, UIDNEXT %d, HIGHESTMODSEQ %d: none may be 0", mb.UIDValidity, mb.UIDNext, mb.ModSeq)
	}
	if err == nil {
		skipped, err = s.importMailbox(ctx, user, name, mb, next)
	}
	if err != nil {
		return false, fmt.Errorf("import mailbox %q of %q: %w", mb.Name, user, err)
	}
	return skipped, nil
}

// importedMsg is a message read for the next commit.
type importedMsg struct {
	uid     uint32
	rec     msgRecord
	inline  []byte // the body, when kept in the index
	hdr     []byte
	summary []byte
}

func (s *Store) importMailbox(ctx context.Context, user, name string, mb Mailbox, next func() (Message, io.Reader, error)) (bool, error) {
	if err := s.dropPartialImports(ctx, user); err != nil {
		return false, err
	}
	if cur, err := s.Mailbox(ctx, user, name); err == nil {
		skip, err := CheckImport(cur, mb)
		if skip || err != nil {
			return skip, err
		}
	} else if !errors.Is(err, ErrNoSuchMailbox) {
		return false, err
	}
	// The message bucket, under a new ID that no record names yet.
	var id uint64
	err := s.update(ctx, user, func(u *userTx) error {
		u.info.NextMailboxID++
		id = u.info.NextMailboxID
		if _, err := u.b.Bucket(bucketMsgs).CreateBucket(mailboxKey(id)); err != nil {
			return err
		}
		imp, err := u.b.CreateBucketIfNotExists(bucketImporting)
		if err != nil {
			return err
		}
		if err := imp.Put(mailboxKey(id), []byte(name)); err != nil {
			return err
		}
		return u.putInfo()
	})
	if err != nil {
		return false, err
	}
	var (
		batch      []importedMsg
		batchBytes int64
		written    []blobID // body files of the batch
		count      int
		size       int64
		prev       uint32
	)
	fail := func(err error) (bool, error) {
		for _, b := range written { // not committed: not counted either
			os.Remove(s.blobPath(b))
		}
		return false, err
	}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		var inlineBytes, fileBytes int64
		err := s.update(ctx, user, func(u *userTx) error {
			inlineBytes, fileBytes = 0, 0
			b := u.b.Bucket(bucketMsgs).Bucket(mailboxKey(id))
			if b == nil {
				return fmt.Errorf("%w: message bucket of the import is gone", errCorrupt)
			}
			for i := range batch {
				m := &batch[i]
				rec := m.rec
				if m.inline != nil {
					var err error
					if rec.Body, err = putBody(u.tx, m.inline); err != nil {
						return err
					}
					inlineBytes += rec.Size
				} else {
					fileBytes += rec.Size
				}
				if err := putMsg(b, m.uid, &rec); err != nil {
					return err
				}
				if err := u.putHeader(id, m.uid, m.hdr, m.summary); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		s.wroteInline(inlineBytes)
		s.bodyBytes.Add(fileBytes)
		batch, batchBytes, written = batch[:0], 0, written[:0]
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		m, body, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fail(fmt.Errorf("read source: %w", err))
		}
		if err := CheckImportMessage(mb, prev, m); err != nil {
			return fail(err)
		}
		prev = m.UID
		flags, err := normalizeFlags(m.Flags)
		if err != nil {
			return fail(fmt.Errorf("message UID %d: %w", m.UID, err))
		}
		im := importedMsg{uid: m.UID, rec: msgRecord{InternalDate: m.InternalDate.UTC(), ModSeq: m.ModSeq, Flags: flags}}
		bp, err := bodyBufs.ReadUpTo(ctxReader{ctx, body}, s.inlineMax)
		if err != nil {
			return fail(fmt.Errorf("message UID %d: read body: %w", m.UID, err))
		}
		var hc headerCapture
		if len(*bp) <= s.inlineMax {
			im.inline = bytes.Clone(*bp)
			im.rec.Size = int64(len(im.inline))
			hc.Write(im.inline)
			batchBytes += im.rec.Size
		} else {
			blob, n, err := s.writeBody(ctx, io.MultiReader(bytes.NewReader(*bp), body), &hc)
			if err != nil {
				bodyBufs.Put(bp)
				return fail(fmt.Errorf("message UID %d: %w", m.UID, err))
			}
			written = append(written, blob)
			im.rec.Blob, im.rec.Size = blob, n
		}
		bodyBufs.Put(bp)
		if m.Size != 0 && im.rec.Size != m.Size {
			return fail(fmt.Errorf("message UID %d: body of %d bytes, the source says %d", m.UID, im.rec.Size, m.Size))
		}
		im.hdr = bytes.Clone(hc.header())
		im.summary = s.summarize(im.hdr)
		batch = append(batch, im)
		count++
		size += im.rec.Size
		if len(batch) >= importBatchMessages || batchBytes >= importBatchBytes {
			if err := flush(); err != nil {
				return fail(err)
			}
		}
	}
	if err := flush(); err != nil {
		return fail(err)
	}
	if count != mb.Messages {
		return false, fmt.Errorf("the source gave %d messages, its mailbox says %d", count, mb.Messages)
	}
	// The mailbox record, the counters and the end of the import, in one
	// commit.
	var oldID uint64
	err = s.update(ctx, user, func(u *userTx) error {
		oldID = 0
		if old, _, err := u.mailbox(name); err == nil {
			skip, err := CheckImport(old.export(name), mb)
			if err != nil {
				return err
			}
			if skip {
				return fmt.Errorf("%w: copied meanwhile by another import", ErrImportConflict)
			}
			// Empty and never used: replaced.
			oldID = old.ID
			if err := u.b.Bucket(bucketMsgs).DeleteBucket(mailboxKey(old.ID)); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
				return err
			}
			if err := u.deleteHeaderBucket(old.ID); err != nil {
				return err
			}
			if err := u.deleteGoneBucket(old.ID); err != nil {
				return err
			}
		} else if !errors.Is(err, ErrNoSuchMailbox) {
			return err
		}
		r := &mailboxRecord{
			ID: id, UIDValidity: mb.UIDValidity, UIDNext: mb.UIDNext, ModSeq: mb.ModSeq,
			SpecialUse: mb.SpecialUse, Subscribed: mb.Subscribed, Messages: count, Size: size,
			RecentUID: min(max(mb.RecentUID, 1), mb.UIDNext),
		}
		if _, err := u.goneBucket(id, true, mb.ModSeq); err != nil {
			return err
		}
		if err := u.putMailbox(name, r); err != nil {
			return err
		}
		if err := u.forgetSubscription(name); err != nil {
			return err
		}
		if err := u.b.Bucket(bucketImporting).Delete(mailboxKey(id)); err != nil {
			return err
		}
		u.info.Used += size
		u.info.Messages += count
		u.info.LastUIDValidity = max(u.info.LastUIDValidity, mb.UIDValidity)
		return u.putInfo()
	})
	if err != nil {
		return false, err // the next import of the user drops what was written
	}
	if oldID != 0 {
		s.notify(Change{User: user, MailboxID: oldID})
	}
	s.notify(Change{User: user, MailboxID: id})
	return false, nil
}

// ImportSubscriptions adds names to the subscriptions of user that name
// no mailbox (see GoneSubscriptions); names of mailboxes are left alone
// (their subscription is part of ImportMailbox).
func (s *Store) ImportSubscriptions(ctx context.Context, user string, names []string) error {
	err := s.update(ctx, user, func(u *userTx) error {
		for _, n := range names {
			n, err := normalizeMailbox(n)
			if err != nil {
				return err
			}
			if u.b.Bucket(bucketMailboxes).Get([]byte(n)) != nil {
				continue
			}
			if err := u.keepSubscription(n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("import subscriptions of %q: %w", user, err)
	}
	return nil
}
