package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

// FuzzStore drives the store through its public API with operations read
// from the input (deliveries, flag changes with random keywords, copies,
// moves, expunges, mailbox creation, renaming and deletion, reopening),
// keeps a model of what was acknowledged, and checks after every reopen
// and at the end that the store opens, quarantines nothing and reads back
// exactly the acknowledged messages, flags and bodies. The seed corpus
// (f.Add and testdata/fuzz/FuzzStore) runs as a normal test.
func FuzzStore(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 1, 0, 5, 9, 1, 3, 8, 2, 1, 4, 8, 4, 0, 8})
	f.Add([]byte("\x00\x10\x00\x00\x90\x00\x01\x00\xff\x01\x01\x01\xf0\x08\x02\x00\x02\x04\x00\x08"))
	f.Add([]byte("\x05\x01\x05\x02\x00\x01\x03\x00\x00\x02\x40\x06\x01\x04\x08\x00\x02\x03\x07\x04\x08"))
	f.Add([]byte("\x00\x00\x01\x01\x00\x01\x00\x07\x05\x02\x06\x00\x03\x08\x03\x00\x02\x01\x04\x07\x05\x08"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 512 { // each operation may fsync: keep runs short
			return
		}
		runStoreOps(t, data)
	})
}

// fuzzInput reads numbers from the fuzzer's bytes, then zeros.
type fuzzInput struct{ b []byte }

func (in *fuzzInput) byte() byte {
	if len(in.b) == 0 {
		return 0
	}
	c := in.b[0]
	in.b = in.b[1:]
	return c
}

func (in *fuzzInput) n(max int) int { return int(in.byte()) % max }

var fuzzMailboxes = []string{"INBOX", "a", "a/b", "b", "Sent", "x/y/z", "inbox/c", strings.Repeat("L", store.MaxMailboxName+1)}

type modelMsg struct {
	body  string
	flags []string // sorted
}

// storeModel is what the store acknowledged: messages by mailbox ID, then
// UID.
type storeModel map[uint64]map[uint32]modelMsg

func runStoreOps(t *testing.T, data []byte) {
	ctx := context.Background()
	dir := t.TempDir()
	in := &fuzzInput{b: data}
	open := func() *store.Store {
		st, err := store.Open(ctx, dir, nil)
		if err != nil {
			t.Fatalf("Open = %v", err)
		}
		store.SetInlineMax(st, 64) // larger bodies go to files
		return st
	}
	st := open()
	defer func() { st.Close() }()
	if err := st.EnsureUser(ctx, alice, 0); err != nil {
		t.Fatal(err)
	}
	model := storeModel{}
	mboxID := func(name string) (uint64, bool) {
		mb, err := st.Mailbox(ctx, alice, name)
		if err != nil {
			return 0, false
		}
		if model[mb.ID] == nil {
			model[mb.ID] = map[uint32]modelMsg{}
		}
		return mb.ID, true
	}
	for _, mb := range must(st.Mailboxes(ctx, alice)) {
		mboxID(mb.Name)
	}
	flags := func() []string {
		var out []string
		switch k := in.n(8); k {
		case 0:
		case 6: // many keywords: at the limit, or beyond
			n := store.MaxFlags - 2 + in.n(4)
			for i := 0; i < n; i++ {
				out = append(out, fmt.Sprintf("k%d", i))
			}
		case 7:
			out = append(out, strings.Repeat("k", store.MaxKeywordLen-1+in.n(3)))
		default:
			for i := 0; i < k; i++ {
				switch c := in.n(6); c {
				case 0:
					out = append(out, store.FlagSeen)
				case 1:
					out = append(out, store.FlagDeleted)
				case 2:
					out = append(out, store.FlagFlagged)
				default:
					out = append(out, fmt.Sprintf("k%d", in.n(32)))
				}
			}
		}
		return out
	}
	// uids picks some UIDs of a mailbox, maybe ones that do not exist.
	uids := func(id uint64) []uint32 {
		var all []uint32
		for uid := range model[id] {
			all = append(all, uid)
		}
		slices.Sort(all)
		var out []uint32
		for n := in.n(4); n >= 0; n-- {
			if len(all) == 0 || in.n(8) == 0 {
				out = append(out, uint32(in.n(40)+1))
			} else {
				out = append(out, all[in.n(len(all))])
			}
		}
		return out
	}
	limitOK := func(err error, over bool, what string) {
		t.Helper()
		if over != errors.Is(err, store.ErrLimit) {
			t.Fatalf("%s: err = %v, beyond a limit: %v", what, err, over)
		}
	}
	allowed := func(err error, what string) {
		t.Helper()
		for _, ok := range []error{store.ErrNoSuchMailbox, store.ErrMailboxExists, store.ErrInvalidMailbox, store.ErrHasChildren, store.ErrInboxNotAllowed} {
			if errors.Is(err, ok) {
				return
			}
		}
		if err != nil && !strings.Contains(err.Error(), "same mailbox") {
			t.Fatalf("%s: %v", what, err)
		}
	}

	for step := 0; len(in.b) > 0; step++ {
		op := in.n(9)
		name := fuzzMailboxes[in.n(len(fuzzMailboxes))]
		id, exists := mboxID(name)
		switch op {
		case 0: // deliver
			body := fmt.Sprintf("Subject: %d\r\n\r\n%s\r\n", step, strings.Repeat("x", in.n(4)*40))
			fl := flags()
			uid, err := st.Deliver(ctx, alice, name, strings.NewReader(body), fl, time.Time{})
			want, over := modelFlags(nil, store.FlagsAdd, fl)
			if err != nil && !over {
				allowed(err, "Deliver")
				continue
			}
			limitOK(err, over, "Deliver")
			if err == nil {
				if !exists {
					t.Fatalf("Deliver to %q that does not exist: uid %d", name, uid)
				}
				model[id][uid] = modelMsg{body: body, flags: want}
			}
		case 1: // flags
			if !exists {
				continue
			}
			fop := store.FlagOp(in.n(3))
			fl := flags()
			us := uids(id)
			_, over := modelFlags(nil, store.FlagsReplace, fl)
			next := map[uint32][]string{}
			for _, uid := range us {
				if m, ok := model[id][uid]; ok {
					var o bool
					next[uid], o = modelFlags(m.flags, fop, fl)
					over = over || o
				}
			}
			_, err := st.SetFlags(ctx, alice, name, us, fop, fl)
			limitOK(err, over, fmt.Sprintf("SetFlags(%v, %d, %d flags)", us, fop, len(fl)))
			if err == nil {
				for uid, f := range next {
					model[id][uid] = modelMsg{body: model[id][uid].body, flags: f}
				}
			}
		case 2, 3: // copy, move
			if !exists {
				continue
			}
			dst := fuzzMailboxes[in.n(len(fuzzMailboxes))]
			dstID, _ := mboxID(dst)
			us := uids(id)
			var res store.CopyResult
			var err error
			if op == 2 {
				res, err = st.Copy(ctx, alice, name, us, dst)
			} else {
				res, err = st.Move(ctx, alice, name, us, dst)
			}
			if err != nil {
				allowed(err, "Copy/Move")
				continue
			}
			for i, suid := range res.SourceUIDs {
				m, ok := model[id][suid]
				if !ok {
					t.Fatalf("copied uid %d that was not there", suid)
				}
				model[dstID][res.DestUIDs[i]] = m
				if op == 3 {
					delete(model[id], suid)
				}
			}
		case 4: // expunge
			if !exists {
				continue
			}
			var us []uint32
			if in.n(2) == 0 {
				us = uids(id)
			}
			gone, err := st.Expunge(ctx, alice, name, us)
			if err != nil {
				t.Fatalf("Expunge = %v", err)
			}
			for _, uid := range gone {
				if !slices.Contains(model[id][uid].flags, store.FlagDeleted) {
					t.Fatalf("expunged uid %d without \\Deleted", uid)
				}
				delete(model[id], uid)
			}
		case 5: // create
			err := st.CreateMailbox(ctx, alice, name, "")
			limitOK(err, len(name) > store.MaxMailboxName, "CreateMailbox")
			allowed(err, "CreateMailbox")
			mboxID(name)
		case 6: // rename
			to := fuzzMailboxes[in.n(len(fuzzMailboxes))]
			err := st.RenameMailbox(ctx, alice, name, to)
			allowed(err, "RenameMailbox")
			for _, mb := range must(st.Mailboxes(ctx, alice)) {
				mboxID(mb.Name) // a new INBOX
			}
		case 7: // delete
			err := st.DeleteMailbox(ctx, alice, name)
			allowed(err, "DeleteMailbox")
			if err == nil {
				delete(model, id)
			}
		case 8: // reopen
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			st = open()
			checkModel(t, st, model)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = open()
	checkModel(t, st, model)
}

// modelFlags applies op to cur as the store should, for flags whose names
// differ in more than case, and reports whether the result is beyond the
// limits.
func modelFlags(cur []string, op store.FlagOp, flags []string) ([]string, bool) {
	over := len(flags) > store.MaxFlags
	set := map[string]bool{}
	for _, f := range flags {
		over = over || len(f) > store.MaxKeywordLen
		set[f] = true
	}
	out := map[string]bool{}
	switch op {
	case store.FlagsReplace:
		out = set
	case store.FlagsAdd:
		for _, f := range cur {
			out[f] = true
		}
		for f := range set {
			out[f] = true
		}
	case store.FlagsRemove:
		for _, f := range cur {
			if !set[f] {
				out[f] = true
			}
		}
	}
	list := make([]string, 0, len(out))
	for f := range out {
		list = append(list, f)
	}
	slices.Sort(list)
	return list, over || len(list) > store.MaxFlags
}

func checkModel(t *testing.T, st *store.Store, model storeModel) {
	t.Helper()
	ctx := context.Background()
	if q := st.Quarantined(); len(q) != 0 {
		t.Fatalf("Quarantined = %+v", q)
	}
	var total int64
	var count int
	for id, want := range model {
		_, msgs, err := st.MessagesByID(ctx, alice, id)
		if err != nil {
			t.Fatalf("MessagesByID(%d) = %v", id, err)
		}
		if len(msgs) != len(want) {
			t.Fatalf("mailbox %d: %d messages, want %d", id, len(msgs), len(want))
		}
		for _, m := range msgs {
			w, ok := want[m.UID]
			if !ok {
				t.Fatalf("mailbox %d: uid %d not acknowledged", id, m.UID)
			}
			got := slices.Sorted(slices.Values(m.Flags))
			if !slices.Equal(got, w.flags) {
				t.Fatalf("mailbox %d uid %d: flags %v, want %v", id, m.UID, got, w.flags)
			}
			f, err := st.OpenBody(ctx, m)
			if err != nil {
				t.Fatalf("OpenBody(%d) = %v", m.UID, err)
			}
			b, err := io.ReadAll(f)
			f.Close()
			if err != nil || string(b) != w.body {
				t.Fatalf("mailbox %d uid %d: body %q, %v, want %q", id, m.UID, b, err, w.body)
			}
			total += m.Size
			count++
		}
	}
	used, n, err := st.Usage(ctx, alice)
	if err != nil || used != total || n != count {
		t.Fatalf("Usage = %d bytes, %d messages, %v; want %d, %d", used, n, err, total, count)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
