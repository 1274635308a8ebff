package imap_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

// qresyncClient is a client that keeps a copy of a mailbox (UID ->
// flags) and the mod-sequence it is in sync with, as Thunderbird or Apple
// Mail keep their cache, and resynchronises it with QRESYNC.
type qresyncClient struct {
	t           *testing.T
	r           *rawSession
	uidValidity uint32
	modseq      uint64 // saved at the end of each command
	flags       map[uint32][]string
	store       *store.Store
	exists      int // as last told

	// during a command
	maxFetch uint64
	highest  uint64 // last HIGHESTMODSEQ of the command, 0: none
}

var (
	qrFetchRE    = regexp.MustCompile(`^\* (\d+) FETCH \((.*)\)$`)
	qrUIDRE      = regexp.MustCompile(`(?:^|[ (])UID (\d+)`)
	qrFlagsRE    = regexp.MustCompile(`FLAGS \(([^)]*)\)`)
	qrUValidRE   = regexp.MustCompile(`^\* OK \[UIDVALIDITY (\d+)\]`)
	tagHighestRE = regexp.MustCompile(`^\S+ OK \[HIGHESTMODSEQ (\d+)\]`)
)

// run sends a command and applies its responses to the copy. It returns
// the tagged response.
func (q *qresyncClient) run(tag, command string) string {
	q.t.Helper()
	if _, err := fmt.Fprintf(q.r.c, "%s %s\r\n", tag, command); err != nil {
		q.t.Fatal(err)
	}
	q.maxFetch, q.highest = 0, 0
	for {
		l := q.r.line()
		if strings.HasPrefix(l, tag+" ") {
			// HIGHESTMODSEQ in the tagged OK, last.
			if m := tagHighestRE.FindStringSubmatch(l); m != nil {
				q.highest, _ = strconv.ParseUint(m[1], 10, 64)
			}
			next := max(q.modseq, q.maxFetch)
			if q.highest != 0 {
				next = q.highest
			}
			// A client saves a state only once it has every message the
			// server announced (or one older than it saved).
			if q.exists <= len(q.flags) || next < q.modseq {
				q.modseq = next
			}
			return l
		}
		q.apply(l)
	}
}

func (q *qresyncClient) apply(l string) {
	t := q.t
	switch {
	case strings.HasPrefix(l, "* VANISHED "):
		earlier := strings.HasPrefix(l, "* VANISHED (EARLIER)")
		for _, uid := range vanishedOf(t, l) {
			if _, ok := q.flags[uid]; ok && !earlier {
				q.exists--
			}
			delete(q.flags, uid)
		}
	case highestRE.MatchString(l):
		n, _ := strconv.ParseUint(highestRE.FindStringSubmatch(l)[1], 10, 64)
		q.highest = n
	case qrUValidRE.MatchString(l):
		n, _ := strconv.ParseUint(qrUValidRE.FindStringSubmatch(l)[1], 10, 32)
		q.uidValidity = uint32(n)
	case strings.HasSuffix(l, " EXISTS"):
		n, _ := strconv.Atoi(strings.Fields(l)[1])
		q.exists = n
	case strings.HasSuffix(l, " EXPUNGE"):
		t.Errorf("EXPUNGE after ENABLE QRESYNC: %q", l)
	case qrFetchRE.MatchString(l):
		m := qrUIDRE.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("FETCH without UID after ENABLE QRESYNC: %q", l)
			return
		}
		uid64, _ := strconv.ParseUint(m[1], 10, 32)
		uid := uint32(uid64)
		ms := fetchModSeq(l)
		if ms == 0 {
			t.Errorf("FETCH without MODSEQ after ENABLE QRESYNC: %q", l)
		}
		q.maxFetch = max(q.maxFetch, ms)
		if f := qrFlagsRE.FindStringSubmatch(l); f != nil {
			var fl []string
			for _, x := range strings.Fields(f[1]) {
				if !strings.EqualFold(x, `\Recent`) {
					fl = append(fl, strings.ToLower(x))
				}
			}
			slices.Sort(fl)
			q.flags[uid] = fl
		}
	}
}

// knownUIDs is the copy's UIDs as a sequence set.
func (q *qresyncClient) knownUIDs() string {
	var uids []uint32
	for u := range q.flags {
		uids = append(uids, u)
	}
	slices.Sort(uids)
	var rs uidRangesT
	for _, u := range uids {
		if k := len(rs); k > 0 && rs[k-1][1]+1 == u {
			rs[k-1][1] = u
			continue
		}
		rs = append(rs, [2]uint32{u, u})
	}
	var parts []string
	for _, r := range rs {
		if r[0] == r[1] {
			parts = append(parts, fmt.Sprint(r[0]))
		} else {
			parts = append(parts, fmt.Sprintf("%d:%d", r[0], r[1]))
		}
	}
	return strings.Join(parts, ",")
}

type uidRangesT [][2]uint32

// learnNew fetches the messages above the highest UID of the copy.
func (q *qresyncClient) learnNew(tag string) {
	next := uint32(1)
	for u := range q.flags {
		next = max(next, u+1)
	}
	q.run(tag, fmt.Sprintf("UID FETCH %d:* (FLAGS MODSEQ)", next))
}

// check compares the copy with the store.
func (q *qresyncClient) check(what string, seed uint64) {
	q.t.Helper()
	_, msgs, err := q.store.Messages(context.Background(), alice, store.Inbox)
	if err != nil {
		q.t.Fatal(err)
	}
	bad := 0
	for _, m := range msgs {
		got, ok := q.flags[m.UID]
		if want := storeFlagsLower(m); !ok || !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			if bad++; bad <= 5 {
				q.t.Errorf("seed %d, %s: UID %d: copy %v (known %v), store %v", seed, what, m.UID, got, ok, want)
			}
		}
	}
	if len(q.flags) != len(msgs) {
		q.t.Errorf("seed %d, %s: copy has %d messages, store %d", seed, what, len(q.flags), len(msgs))
	}
}

// TestQresyncRandomResync: a QRESYNC client keeps a copy of INBOX while
// the mailbox changes at random (flags, expunges, moves, deliveries) both
// while it is connected (updates: VANISHED, FETCH FLAGS MODSEQ, and
// delayed expunges during its own FETCHes) and while it is away; after
// every reconnection with SELECT (QRESYNC (uidvalidity modseq
// known-uids)) from the mod-sequence it saved, its copy equals the
// store. Seeded (IMAP_QRESYNC_SEED); the seed is printed on failure.
func TestQresyncRandomResync(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("IMAP_QRESYNC_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replay with IMAP_QRESYNC_SEED=%d", seed)
		}
	})
	rnd := rand.New(rand.NewPCG(seed, 7))
	env := newEnv(t, 0)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		env.deliver(t, alice, fmt.Sprint("m", i))
	}
	flagsPool := []string{store.FlagSeen, store.FlagFlagged, store.FlagAnswered, store.FlagDeleted, "$Label1", "Work"}
	// mutate changes the mailbox as other clients would.
	mutate := func(rnd *rand.Rand, n int) error {
		for i := 0; i < n; i++ {
			_, msgs, err := env.st.Messages(ctx, alice, store.Inbox)
			if err != nil {
				return err
			}
			var pick []uint32
			for _, m := range msgs {
				if rnd.IntN(5) == 0 {
					pick = append(pick, m.UID)
				}
			}
			switch r := rnd.IntN(10); {
			case r < 5:
				op := store.FlagsAdd
				if rnd.IntN(2) == 0 {
					op = store.FlagsRemove
				}
				_, err = env.st.SetFlags(ctx, alice, store.Inbox, pick, op, []string{flagsPool[rnd.IntN(len(flagsPool))]})
			case r < 7:
				_, err = env.st.Expunge(ctx, alice, store.Inbox, pick)
			case r < 8:
				if len(pick) > 0 {
					_, err = env.st.Move(ctx, alice, store.Inbox, pick[:1], "Trash")
				}
			default:
				_, err = env.st.Deliver(ctx, alice, "", strings.NewReader(mail(fmt.Sprint("new ", rnd.IntN(1000)))), nil, time.Time{})
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	q := &qresyncClient{t: t, flags: map[uint32][]string{}, store: env.st}
	connect := func(round int) {
		q.r = loginRaw(t, env)
		q.run("e", "ENABLE QRESYNC")
		if q.modseq == 0 {
			q.run("s", "SELECT INBOX")
			q.run("f", "UID FETCH 1:* (FLAGS MODSEQ)")
			return
		}
		known := q.knownUIDs()
		if known != "" {
			known = " " + known
		}
		q.run("s", fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d%s))", q.uidValidity, q.modseq, known))
		q.learnNew("n")
	}
	for round := 0; round < 16; round++ {
		connect(round)
		q.check(fmt.Sprintf("round %d, after SELECT (QRESYNC)", round), seed)
		// Odd rounds: the changes run at the same time as the client's
		// commands (as another client would make them); the copy is
		// compared once they are over.
		concurrent := round%2 == 1
		var done chan error
		if concurrent {
			done = make(chan error, 1)
			r2 := rand.New(rand.NewPCG(seed, uint64(round)))
			go func() { done <- mutate(r2, 20) }()
		}
		for k := 0; k < 6; k++ {
			if !concurrent {
				if err := mutate(rnd, 1+rnd.IntN(3)); err != nil {
					t.Fatal(err)
				}
			}
			switch rnd.IntN(3) {
			case 0:
				// Its own FETCH: expunges wait; MODSEQ may not pass them.
				if tagged := q.run("g", "FETCH 1:* (FLAGS MODSEQ)"); !strings.HasPrefix(tagged, "g OK") && !strings.HasPrefix(tagged, "g NO [EXPUNGEISSUED]") {
					t.Fatalf("FETCH: %q", tagged)
				}
			case 1:
				q.run("p", "NOOP")
				q.learnNew("l")
				if !concurrent {
					q.check(fmt.Sprintf("round %d, after NOOP", round), seed)
				}
			default:
				// Its own STORE, answered with FLAGS and MODSEQ.
				q.run("t", fmt.Sprintf("STORE 1 %sFLAGS (%s)", []string{"+", "-"}[rnd.IntN(2)], flagsPool[rnd.IntN(len(flagsPool))]))
			}
			if q.exists > len(q.flags) {
				q.learnNew("m")
			}
		}
		if concurrent {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if rnd.IntN(2) == 0 {
				// Up to date before leaving; else from whatever state
				// the last command left.
				q.run("p", "NOOP")
				q.learnNew("l")
				q.check(fmt.Sprintf("round %d, after concurrent changes", round), seed)
			}
		}
		// Away: more changes before the next connection (sometimes
		// right after a FETCH, with expunges not yet told).
		q.r.c.Close()
		if err := mutate(rnd, rnd.IntN(6)); err != nil {
			t.Fatal(err)
		}
	}
}
