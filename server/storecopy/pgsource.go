package storecopy

import (
	"context"
	"fmt"
	"sync"

	"github.com/mailctl/mailctl/server/pgstore"
	"github.com/mailctl/mailctl/server/store"
)

// PGSource reads a PostgreSQL store as a Source, through pgstore's own
// types: a bridge until *pgstore.Store implements store.Backend.
func PGSource(st *pgstore.Store) Source { return &pgSource{st: st} }

type pgSource struct {
	st   *pgstore.Store
	mu   sync.Mutex
	msgs map[uint64]pgstore.Message // of the last Messages call, by Ref
}

func (p *pgSource) Users(ctx context.Context) ([]string, error) { return p.st.Users(ctx) }

func (p *pgSource) Quota(ctx context.Context, user string) (int64, error) {
	return p.st.Quota(ctx, user)
}

func toMailbox(mb pgstore.Mailbox) store.Mailbox {
	return store.Mailbox{
		Name: mb.Name, ID: mb.ID, UIDValidity: mb.UIDValidity, UIDNext: mb.UIDNext, ModSeq: mb.ModSeq,
		SpecialUse: mb.SpecialUse, Subscribed: mb.Subscribed, Messages: mb.Messages, Size: mb.Size,
	}
}

func (p *pgSource) Mailboxes(ctx context.Context, user string) ([]store.Mailbox, error) {
	mbs, err := p.st.Mailboxes(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make([]store.Mailbox, len(mbs))
	for i, mb := range mbs {
		out[i] = toMailbox(mb)
	}
	return out, nil
}

// Messages keeps the messages it returns until the next call, for
// OpenBody (the copy reads one mailbox at a time).
func (p *pgSource) Messages(ctx context.Context, user, mailbox string) (store.Mailbox, []store.Message, error) {
	mb, msgs, err := p.st.Messages(ctx, user, mailbox)
	if err != nil {
		return store.Mailbox{}, nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = make(map[uint64]pgstore.Message, len(msgs))
	out := make([]store.Message, len(msgs))
	for i, m := range msgs {
		ref := uint64(i + 1)
		p.msgs[ref] = m
		out[i] = store.Message{UID: m.UID, Size: m.Size, InternalDate: m.InternalDate, ModSeq: m.ModSeq, Flags: m.Flags, Ref: ref}
	}
	return toMailbox(mb), out, nil
}

func (p *pgSource) OpenBody(ctx context.Context, m store.Message) (store.Body, error) {
	p.mu.Lock()
	pm, ok := p.msgs[m.Ref]
	p.mu.Unlock()
	if !ok || pm.UID != m.UID {
		return nil, fmt.Errorf("open message %d: not of the mailbox last listed", m.UID)
	}
	return p.st.OpenBody(ctx, pm)
}

// GoneSubscriptions: PostgreSQL keeps none yet.
func (p *pgSource) GoneSubscriptions(ctx context.Context, user string) ([]string, error) {
	return nil, nil
}
