package store_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/mailctl/mailctl/server/store"
)

// TestApplyChanges checks ApplyChanges against a model: a mailbox changed
// by seeded random appends, flag changes and expunges, whose snapshot at
// an older MODSEQ brought up to date with the changes since must be the
// mailbox as it is, and the older snapshot left as it was.
func TestApplyChanges(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("seed %d", seed)
				}
			}()
			r := rand.New(rand.NewPCG(seed, 0))
			var cur []store.Message // the mailbox, UID order
			var modseq uint64
			var uidNext uint32 = 1
			// vanished records: UID -> MODSEQ of its expunge.
			gone := map[uint32]uint64{}
			step := func() {
				modseq++
				switch op := r.IntN(3); {
				case op == 0 || len(cur) == 0:
					for n := 1 + r.IntN(3); n > 0; n-- {
						cur = append(cur, store.Message{UID: uidNext, ModSeq: modseq, Size: int64(uidNext)})
						uidNext += uint32(1 + r.IntN(2)) // gaps as after a failed append
					}
				case op == 1:
					next := slices.Clone(cur)
					for i := range next {
						if r.IntN(3) == 0 {
							next[i].ModSeq = modseq
							next[i].Flags = []string{fmt.Sprint("k", modseq)}
						}
					}
					cur = next
				default:
					cur = slices.DeleteFunc(slices.Clone(cur), func(m store.Message) bool {
						if r.IntN(3) == 0 {
							gone[m.UID] = modseq
							return true
						}
						return false
					})
				}
			}
			for range 1 + r.IntN(10) {
				step()
			}
			old, since := slices.Clone(cur), modseq
			keep := slices.Clone(old)
			for range r.IntN(10) {
				step()
			}
			var changed []store.Message
			for _, m := range cur {
				if m.ModSeq > since {
					changed = append(changed, m)
				}
			}
			var uids []uint32
			for uid, ms := range gone {
				if ms > since {
					uids = append(uids, uid)
				}
			}
			slices.Sort(uids)
			var vanished [][2]uint32
			for _, u := range uids {
				if n := len(vanished); n > 0 && vanished[n-1][1]+1 == u {
					vanished[n-1][1] = u
					continue
				}
				vanished = append(vanished, [2]uint32{u, u})
			}
			got := store.ApplyChanges(old, changed, vanished)
			if len(got) != len(cur) || (len(got) > 0 && !reflect.DeepEqual(got, cur)) {
				t.Fatalf("ApplyChanges:\n got  %v\n want %v", got, cur)
			}
			if !reflect.DeepEqual(old, keep) {
				t.Fatalf("ApplyChanges changed its input: %v, was %v", old, keep)
			}
		})
	}
}
