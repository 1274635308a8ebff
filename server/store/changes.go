package store

import "context"

// ChangeReader is implemented by a Backend that can tell what changed in
// a mailbox since a modification sequence for less than listing it whole
// (pgstore, where MessagesByID sends every message over the network). The
// IMAP server's shared snapshot of a selected mailbox is brought up to
// date with it after each change instead of being read again. The
// embedded store, whose MessagesByID reads a local index, does not
// implement it.
type ChangeReader interface {
	// ChangesSince returns the mailbox (by ID) as MailboxByID would, the
	// messages whose ModSeq is above modseq (new ones and changed ones)
	// in UID order, and the UIDs that left the mailbox after modseq as
	// ascending disjoint ranges [lo, hi], all from one snapshot of the
	// store: ApplyChanges of them to the messages the mailbox had at
	// modseq gives its messages at mb.ModSeq. complete is false when the
	// records of expunged UIDs do not go back to modseq: the caller must
	// then read the whole mailbox (MessagesByID). A mailbox gone is
	// ErrNoSuchMailbox.
	ChangesSince(ctx context.Context, user string, mailboxID uint64, modseq uint64) (mb Mailbox, changed []Message, vanished [][2]uint32, complete bool, err error)
}

// ApplyChanges returns the messages of msgs (in UID order) without those
// whose UID is in vanished (ascending disjoint ranges [lo, hi]), with the
// messages of changed (in UID order) in place of those of the same UID or
// inserted in UID order. Neither msgs nor changed is modified: the result
// is a new slice (callers share msgs with readers that hold no lock).
func ApplyChanges(msgs, changed []Message, vanished [][2]uint32) []Message {
	out := make([]Message, 0, len(msgs)+len(changed))
	i, j, k := 0, 0, 0
	for i < len(msgs) || j < len(changed) {
		if j < len(changed) && (i == len(msgs) || changed[j].UID <= msgs[i].UID) {
			if i < len(msgs) && changed[j].UID == msgs[i].UID {
				i++ // replaced
			}
			out = append(out, changed[j])
			j++
			continue
		}
		m := msgs[i]
		i++
		for k < len(vanished) && vanished[k][1] < m.UID {
			k++
		}
		if k < len(vanished) && vanished[k][0] <= m.UID {
			continue // expunged
		}
		out = append(out, m)
	}
	return out
}

// FlagWriteReporter is implemented by a Backend that tells, with the
// result of a flag write, the mailbox's HIGHESTMODSEQ when the write took
// the mailbox (before) and after it (after; equal to before when nothing
// changed). A node whose snapshot of the mailbox is at before applies
// the write's result to it instead of reading the changes back
// (server/imap: a STORE 1:* of 2000 messages read them all again).
type FlagWriteReporter interface {
	// SetFlagsReport is SetFlags, or SetFlagsUnchangedSince when cond.
	SetFlagsReport(ctx context.Context, user, mailbox string, uids []uint32, op FlagOp, flags []string, cond bool, unchangedSince uint64) (updated []Message, modified []uint32, before, after uint64, err error)
}

// FlagWriteCounter is implemented by a Backend that can make a flag
// write (SetFlags) and answer only with the number of messages it changed
// and the mailbox's HIGHESTMODSEQ before and after it (as
// FlagWriteReporter's), for a caller that holds the mailbox as it was at
// before and works out the rest with ApplyFlags: a message changes when
// ApplyFlags gives it another set of flags, and its MODSEQ becomes after
// (server/imap's node snapshot; pgstore then sends no message back).
type FlagWriteCounter interface {
	SetFlagsCount(ctx context.Context, user, mailbox string, uids []uint32, op FlagOp, flags []string) (changed int, before, after uint64, err error)
}
