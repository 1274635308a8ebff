package store

import (
	"context"
	"io"
	"time"
)

// Backend is the mail store as the protocol servers (server/imap, and
// through their narrower interfaces server/smtp, server/queue and the
// Sieve delivery) use it. Two implementations exist: *Store, the embedded
// store of this package (a bbolt index and message files in one
// directory, the default), and *pgstore.Store, a PostgreSQL database that
// several `mailctl serve` nodes share (issue 20).
//
// Every implementation keeps the semantics documented on *Store's methods:
// the same sentinel errors (ErrNoSuchUser, ErrNoSuchMailbox,
// ErrMailboxExists, ErrQuotaExceeded, ErrInvalidMailbox, *LimitError), the
// same mailbox name and flag rules, a message acknowledged only once
// durable, one new MODSEQ per write, and Watch callbacks for every change
// committed, whichever node made it.
type Backend interface {
	EnsureUser(ctx context.Context, user string, quotaBytes int64) error
	Users(ctx context.Context) ([]string, error)
	Quota(ctx context.Context, user string) (int64, error)
	Usage(ctx context.Context, user string) (bytes int64, messages int, err error)

	Mailboxes(ctx context.Context, user string) ([]Mailbox, error)
	Mailbox(ctx context.Context, user, name string) (Mailbox, error)
	MailboxByID(ctx context.Context, user string, id uint64) (Mailbox, error)
	CreateMailbox(ctx context.Context, user, name, specialUse string) error
	DeleteMailbox(ctx context.Context, user, name string) error
	RenameMailbox(ctx context.Context, user, oldName, newName string) error
	SetSubscribed(ctx context.Context, user, name string, subscribed bool) error
	GoneSubscriptions(ctx context.Context, user string) ([]string, error)

	Deliver(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uid uint32, err error)
	Append(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uidValidity, uid uint32, err error)
	Messages(ctx context.Context, user, mailbox string) (Mailbox, []Message, error)
	MessagesByID(ctx context.Context, user string, id uint64) (Mailbox, []Message, error)
	OpenBody(ctx context.Context, m Message) (Body, error)
	SetFlags(ctx context.Context, user, mailbox string, uids []uint32, op FlagOp, flags []string) ([]Message, error)
	SetFlagsUnchangedSince(ctx context.Context, user, mailbox string, uids []uint32, op FlagOp, flags []string, unchangedSince uint64) (updated []Message, modified []uint32, err error)
	Expunge(ctx context.Context, user, mailbox string, uids []uint32) ([]uint32, error)
	Copy(ctx context.Context, user, src string, uids []uint32, dst string) (CopyResult, error)
	Move(ctx context.Context, user, src string, uids []uint32, dst string) (CopyResult, error)
	ClaimRecent(ctx context.Context, user string, id uint64, upTo uint32) (first uint32, err error)
	Vanished(ctx context.Context, user string, mailboxID uint64, since uint64) (ranges [][2]uint32, complete bool, err error)

	SetHeaderSummary(fn func(header []byte) []byte)
	Headers(ctx context.Context, user string, mailboxID uint64, uids []uint32) ([][]byte, error)
	Summaries(ctx context.Context, user string, mailboxID uint64, uids []uint32) ([][]byte, error)

	Watch(fn func(Change)) (cancel func())
	Close() error
}

var _ Backend = (*Store)(nil)
