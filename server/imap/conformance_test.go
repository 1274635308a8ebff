package imap_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailctl/mailctl/server/imap"
	"github.com/mailctl/mailctl/server/store"
)

var conformanceSeed = flag.Uint64("imap.seed", 0, "seed of TestConformanceSessions (default: IMAP_CONFORMANCE_SEED, else the time)")

// TestConformanceSessions (issue 13, "Done when"; issue 20 across nodes):
// 10 go-imap client sessions on one account, spread round robin over two
// IMAP servers sharing one store as `serve` nodes share a database (each
// server keeps its own state of the selected mailboxes, refreshed from
// the store's change feed), run random APPEND, STORE +/-FLAGS (system flags
// and keywords), COPY, MOVE, EXPUNGE, UID EXPUNGE, FETCH, NOOP and IDLE
// on two mailboxes. Each session's view is rebuilt from the bytes the
// server sent it, in order (a tap under the client): EXISTS, EXPUNGE and
// FETCH UID/FLAGS. It checks:
//   - at checkpoints (every session quiet, then NOOP), every view (sequence
//     number -> UID, flags, EXISTS) equals the store;
//   - every FETCH answer's UID is the one the view has at that number;
//   - no update is older than what the session already saw: between two
//     states of a message's flags that a session is shown, each flag that
//     differs was changed by a STORE that ended after the first state was
//     shown to be current and started before the second was received.
//   - CONDSTORE (sessions 2, 5, 8 select with it, and some of their STOREs
//     are conditional, UNCHANGEDSINCE): every FETCH with FLAGS they get
//     outside their own FETCH commands (updates, STORE answers) has
//     MODSEQ, a message's MODSEQ never goes down, and at checkpoints the
//     MODSEQ of each message and the HIGHESTMODSEQ of STATUS are the
//     store's; no other session ever gets MODSEQ.
//
// Seeded: -imap.seed or IMAP_CONFORMANCE_SEED replays a run; the seed is
// printed on failure.
func TestConformanceSessions(t *testing.T) {
	seed := conformanceSeedFor(t)
	confRAMDisk(t)
	env := newEnv(t, 0)
	// Two IMAP servers on one store: each keeps its own state of the
	// selected mailboxes and learns what the other did through the
	// store's change feed, as nodes on a shared store do.
	second := servePlain(t, env.st, env.auth)
	runConformance(t, confNodes{addrs: []string{env.plainAddr, second}, st: env.st}, seed)
}

// conformanceSeedFor returns the seed of a conformance run (-imap.seed,
// IMAP_CONFORMANCE_SEED, else the time) and prints it if the test fails.
func conformanceSeedFor(t *testing.T) uint64 {
	t.Helper()
	seed := *conformanceSeed
	if s := os.Getenv("IMAP_CONFORMANCE_SEED"); seed == 0 && s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("IMAP_CONFORMANCE_SEED: %v", err)
		}
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replay with IMAP_CONFORMANCE_SEED=%d", seed)
		}
	})
	return seed
}

// confRAMDisk puts the test's temporary files on a RAM disk when there is
// one: the index's fsyncs are not what is tested, and the run takes a
// third of the time.
func confRAMDisk(t *testing.T) {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() && os.Getenv("TMPDIR") == "" {
		t.Setenv("TMPDIR", "/dev/shm")
	}
}

// servePlain starts one more IMAP server on st (plain text, STARTTLS
// offered, loopback logins allowed) and returns its address.
func servePlain(t testing.TB, st store.Backend, auth imap.Authenticator) string {
	t.Helper()
	cert, _ := selfSigned(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := imap.New(st, auth, imap.Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, Logger: logger})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	return ln.Addr().String()
}

// confNodes is what the conformance sessions run against: IMAP servers
// sharing one store (the nodes), and that store, whose state the
// checkpoints compare the sessions' views with. Alice must exist in it.
type confNodes struct {
	addrs []string // plain-text IMAP; session i uses addrs[i%len(addrs)]
	st    store.Backend
	// commands run in all (default 10000; 1500 with -short).
	commands int
}

// runConformance runs the sessions of TestConformanceSessions against
// nodes, with seed.
func runConformance(t *testing.T, nodes confNodes, seed uint64) {
	const sessions = 10
	total, rounds := 10000, 20
	if nodes.commands > 0 {
		total = nodes.commands
	}
	if testing.Short() {
		total, rounds = 1500, 5
	}
	perRound := total / sessions / rounds

	ctx := context.Background()
	if err := nodes.st.CreateMailbox(ctx, alice, "Other", ""); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := nodes.st.Deliver(ctx, alice, "", strings.NewReader(mail(fmt.Sprint("seed ", i))), nil, time.Time{}); err != nil {
			t.Fatalf("Deliver = %v", err)
		}
	}
	log := &opLog{byKey: map[opKey][]*flagOp{}}
	ss := make([]*confSession, sessions)
	for i := range ss {
		mbox := "INBOX"
		if i >= 7 {
			mbox = "Other"
		}
		ss[i] = dialConf(t, nodes.addrs[i%len(nodes.addrs)], i, mbox, seed, log)
	}
	// Bounded: a run on two idle cores with -race takes well under a
	// minute; this bound only stops a run that hangs.
	began := time.Now()
	deadline := began.Add(8 * time.Minute)
	cmds := 0
	for round := 0; round < rounds; round++ {
		var wg sync.WaitGroup
		for _, s := range ss {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < perRound && !t.Failed(); k++ {
					s.step(t)
				}
			}()
		}
		wg.Wait()
		cmds += perRound * sessions
		if t.Failed() {
			return
		}
		// Checkpoint: every session quiet; a NOOP brings each up to date.
		for _, s := range ss {
			s.checkpoint(t, nodes.st, round)
			if s.condstore {
				s.checkModSeqs(t, nodes.st, round)
			}
		}
		if t.Failed() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("too slow: %d commands in %v", cmds, time.Since(began))
		}
	}
	t.Logf("seed %d: %d random commands in %d sessions on %d servers, %d checkpoints, %v", seed, cmds, sessions, len(nodes.addrs), rounds, time.Since(began).Round(time.Millisecond))
}

// opKey names a flag of a message.
type opKey struct {
	mailbox string
	uid     uint32
	flag    string // lower case
}

// flagOp is a STORE that added or removed a flag, with its time span.
type flagOp struct {
	add        bool
	start, end time.Time
}

type opLog struct {
	mu    sync.Mutex
	byKey map[opKey][]*flagOp
}

// add logs a STORE about to be sent, as running until it ends (done).
func (l *opLog) add(mailbox string, uids []uint32, flags []goimap.Flag, add bool) (done func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ops []*flagOp
	start := time.Now()
	for _, u := range uids {
		for _, f := range flags {
			k := opKey{mailbox, u, strings.ToLower(string(f))}
			op := &flagOp{add, start, start.Add(time.Hour)}
			ops = append(ops, op)
			l.byKey[k] = append(l.byKey[k], op)
		}
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		end := time.Now()
		for _, op := range ops {
			op.end = end
		}
	}
}

// explains reports whether a STORE changing flag f of uid the add way
// ended after since and started before until.
func (l *opLog) explains(mailbox string, uid uint32, f string, add bool, since, until time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, op := range l.byKey[opKey{mailbox, uid, f}] {
		if op.add == add && op.end.After(since) && op.start.Before(until) {
			return true
		}
	}
	return false
}

// seen is the last state of a message's flags shown to a session, and
// the earliest time at which it was current.
type seen struct {
	flags []string // lower case, sorted, without \recent
	since time.Time
}

// confSession is a session with the view its server sent it.
type confSession struct {
	id      int
	mailbox string
	other   string
	c       *imapclient.Client
	rnd     *rand.Rand
	log     *opLog

	mu       sync.Mutex // guards the view, written by the tap
	uids     []uint32   // by sequence number - 1; 0 until learnt
	flags    map[uint32]seen
	cmdStart time.Time // of the command in progress: what is shown since is current since then
	errs     []string  // found by the tap
	// CONDSTORE sessions: the last MODSEQ shown for each UID.
	condstore bool
	modseqs   map[uint32]uint64
	inFetch   bool // a FETCH without MODSEQ is running
	literal   int
	line      []byte
}

func dialConf(t *testing.T, addr string, id int, mailbox string, seed uint64, log *opLog) *confSession {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &confSession{id: id, mailbox: mailbox, other: "Other", log: log, flags: map[uint32]seen{}, rnd: rand.New(rand.NewPCG(seed, uint64(id))),
		condstore: id%3 == 2, modseqs: map[uint32]uint64{}}
	if mailbox == "Other" {
		s.other = "INBOX"
	}
	s.c = imapclient.New(&tapConn{Conn: nc, s: s}, nil)
	t.Cleanup(func() { s.c.Close() })
	if err := s.c.Login(alice, alicePW).Wait(); err != nil {
		t.Fatal(err)
	}
	if id%2 == 1 {
		if _, err := s.c.Enable(goimap.CapIMAP4rev2).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	s.begin()
	data, err := s.c.Select(mailbox, &goimap.SelectOptions{CondStore: s.condstore}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if data.HighestModSeq == 0 {
		t.Errorf("session %d: SELECT without HIGHESTMODSEQ", id)
	}
	s.learn(t)
	return s
}

// tapConn passes the server's bytes to the session's view, in order.
type tapConn struct {
	net.Conn
	s *confSession
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.s.feed(p[:n])
	}
	return n, err
}

func (s *confSession) begin() {
	s.mu.Lock()
	s.cmdStart = time.Now()
	s.mu.Unlock()
}

// feed parses the server's output: whole response lines, literals
// skipped.
func (s *confSession) feed(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for len(p) > 0 {
		if s.literal > 0 {
			n := min(s.literal, len(p))
			s.literal -= n
			p = p[n:]
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.line = append(s.line, p...)
			return
		}
		s.line = append(s.line, p[:i+1]...)
		p = p[i+1:]
		l := strings.TrimRight(string(s.line), "\r\n")
		if j := strings.LastIndexByte(l, '{'); j >= 0 && strings.HasSuffix(l, "}") {
			if n, err := strconv.Atoi(strings.TrimSuffix(l[j+1:], "}")); err == nil {
				s.literal = n
				s.line = append(s.line[:0], l[:j]...) // the response goes on after it
				continue
			}
		}
		s.line = s.line[:0]
		s.response(l, now)
	}
}

func (s *confSession) fail(format string, args ...any) {
	s.errs = append(s.errs, fmt.Sprintf("session %d (%s): ", s.id, s.mailbox)+fmt.Sprintf(format, args...))
}

// response applies one untagged response to the view. s.mu is held.
func (s *confSession) response(l string, now time.Time) {
	f := strings.Fields(l)
	if len(f) < 3 || f[0] != "*" {
		return
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		return
	}
	switch strings.ToUpper(f[2]) {
	case "EXISTS":
		if n < len(s.uids) {
			s.fail("EXISTS %d below %d messages", n, len(s.uids))
			return
		}
		for len(s.uids) < n {
			s.uids = append(s.uids, 0)
		}
	case "EXPUNGE":
		if n < 1 || n > len(s.uids) {
			s.fail("EXPUNGE %d of %d messages", n, len(s.uids))
			return
		}
		delete(s.flags, s.uids[n-1])
		delete(s.modseqs, s.uids[n-1])
		s.uids = slices.Delete(s.uids, n-1, n)
	case "FETCH":
		if n < 1 || n > len(s.uids) {
			s.fail("FETCH %d of %d messages: %s", n, len(s.uids), l)
			return
		}
		uid, flags, hasFlags := parseFetch(l)
		if uid == 0 {
			s.fail("FETCH without UID: %s", l)
			return
		}
		if s.uids[n-1] == 0 {
			s.uids[n-1] = uid
		} else if s.uids[n-1] != uid {
			s.fail("FETCH %d has UID %d, the view %d: %s", n, uid, s.uids[n-1], l)
			return
		}
		switch ms := fetchModSeq(l); {
		case !s.condstore && ms != 0:
			s.fail("MODSEQ without CONDSTORE: %s", l)
		case s.condstore && hasFlags && ms == 0 && !s.inFetch:
			s.fail("FETCH FLAGS without MODSEQ once CONDSTORE is on: %s", l)
		case ms != 0 && ms < s.modseqs[uid]:
			s.fail("UID %d: MODSEQ %d after %d: %s", uid, ms, s.modseqs[uid], l)
		case ms != 0:
			s.modseqs[uid] = ms
		}
		if !hasFlags {
			return
		}
		if prev, ok := s.flags[uid]; ok {
			for _, fl := range prev.flags {
				if !slices.Contains(flags, fl) && !s.log.explains(s.mailbox, uid, fl, false, prev.since, now) {
					s.fail("UID %d: %s gone (%v after %v) with no STORE removing it since: out of order", uid, fl, flags, prev.flags)
				}
			}
			for _, fl := range flags {
				if !slices.Contains(prev.flags, fl) && !s.log.explains(s.mailbox, uid, fl, true, prev.since, now) {
					s.fail("UID %d: %s came (%v after %v) with no STORE adding it since: out of order", uid, fl, flags, prev.flags)
				}
			}
		}
		s.flags[uid] = seen{flags: flags, since: s.cmdStart}
	}
}

// parseFetch returns the UID and FLAGS of a FETCH response line (literals
// removed).
func parseFetch(l string) (uid uint32, flags []string, hasFlags bool) {
	if i := strings.Index(l, "UID "); i >= 0 {
		var u uint64
		rest := l[i+4:]
		end := strings.IndexAny(rest, " )")
		if end < 0 {
			end = len(rest)
		}
		u, _ = strconv.ParseUint(rest[:end], 10, 32)
		uid = uint32(u)
	}
	if i := strings.Index(l, "FLAGS ("); i >= 0 {
		rest := l[i+7:]
		end := strings.IndexByte(rest, ')')
		hasFlags = true
		flags = []string{}
		for _, fl := range strings.Fields(rest[:end]) {
			if fl = strings.ToLower(fl); fl != `\recent` {
				flags = append(flags, fl)
			}
		}
		slices.Sort(flags)
	}
	return uid, flags, hasFlags
}

// errs returns and clears what the tap found.
func (s *confSession) takeErrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.errs
	s.errs = nil
	return e
}

// learn fetches the UIDs and flags of the messages announced by EXISTS.
func (s *confSession) learn(t *testing.T) {
	s.mu.Lock()
	first := slices.Index(s.uids, 0)
	s.mu.Unlock()
	if first < 0 {
		return
	}
	s.begin()
	s.setFetching(true)
	_, err := s.c.Fetch(goimap.SeqSet{{Start: uint32(first) + 1, Stop: 0}}, &goimap.FetchOptions{UID: true, Flags: true}).Collect()
	s.setFetching(false)
	if err != nil && !isExpungeIssued(err) {
		t.Errorf("session %d: FETCH: %v", s.id, err)
	}
}

var confFlags = []goimap.Flag{goimap.FlagSeen, goimap.FlagAnswered, goimap.FlagFlagged, goimap.FlagDeleted, goimap.FlagDraft, "$Label1", "$Label2", "Work", "todo"}

// pick returns up to n known UIDs of the view, and their sequence numbers.
func (s *confSession) pick(n int) ([]uint32, []uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var uids, seqs []uint32
	if len(s.uids) == 0 {
		return nil, nil
	}
	for k := 0; k < n; k++ {
		i := s.rnd.IntN(len(s.uids))
		if s.uids[i] != 0 && !slices.Contains(uids, s.uids[i]) {
			uids = append(uids, s.uids[i])
			seqs = append(seqs, uint32(i)+1)
		}
	}
	return uids, seqs
}

func uidSet(uids []uint32) goimap.UIDSet {
	var set goimap.UIDSet
	for _, u := range uids {
		set.AddNum(goimap.UID(u))
	}
	return set
}

func seqSet(seqs []uint32) goimap.SeqSet {
	var set goimap.SeqSet
	for _, n := range seqs {
		set.AddNum(n)
	}
	return set
}

// step runs one random command.
func (s *confSession) step(t *testing.T) {
	s.learn(t)
	uids, seqs := s.pick(1 + s.rnd.IntN(3))
	s.begin()
	var err error
	switch r := s.rnd.IntN(100); {
	case r < 10:
		msg := mail(fmt.Sprintf("s%d %d", s.id, s.rnd.IntN(1e6)))
		var fl []goimap.Flag
		if s.rnd.IntN(2) == 0 {
			fl = []goimap.Flag{confFlags[s.rnd.IntN(len(confFlags))]}
		}
		mbox := s.mailbox
		if s.rnd.IntN(3) == 0 {
			mbox = s.other
		}
		cmd := s.c.Append(mbox, int64(len(msg)), &goimap.AppendOptions{Flags: fl})
		cmd.Write([]byte(msg))
		cmd.Close()
		_, err = cmd.Wait()
	case r < 50:
		if len(uids) == 0 {
			err = s.c.Noop().Wait()
			break
		}
		fl := []goimap.Flag{confFlags[s.rnd.IntN(len(confFlags))]}
		if s.rnd.IntN(3) == 0 {
			fl = append(fl, confFlags[s.rnd.IntN(len(confFlags))])
		}
		op := goimap.StoreFlagsAdd
		if s.rnd.IntN(2) == 0 {
			op = goimap.StoreFlagsDel
		}
		sf := &goimap.StoreFlags{Op: op, Flags: fl, Silent: s.rnd.IntN(4) == 0}
		var set goimap.NumSet = uidSet(uids)
		if s.rnd.IntN(3) == 0 {
			set = seqSet(seqs)
		}
		var opts *goimap.StoreOptions
		if s.condstore && s.rnd.IntN(2) == 0 {
			// Conditional on the MODSEQ last seen (all messages' lowest):
			// fails for those changed since ([MODIFIED]).
			opts = &goimap.StoreOptions{}
			s.mu.Lock()
			for _, u := range uids {
				if ms := s.modseqs[u]; ms != 0 && (opts.UnchangedSince == 0 || ms < opts.UnchangedSince) {
					opts.UnchangedSince = ms
				}
			}
			s.mu.Unlock()
			// Silent, the client would apply its change to the messages
			// not in [MODIFIED], which go-imap does not return.
			sf.Silent = false
		}
		done := s.log.add(s.mailbox, uids, fl, op == goimap.StoreFlagsAdd)
		if sf.Silent {
			// The client expects its change; the server says otherwise
			// if it knows better.
			s.expect(uids, fl, op == goimap.StoreFlagsAdd)
		}
		_, err = s.c.Store(set, sf, opts).Collect()
		done()
	case r < 60:
		if len(uids) == 0 {
			err = s.c.Noop().Wait()
			break
		}
		s.setFetching(true)
		_, err = s.c.Fetch(seqSet(seqs), &goimap.FetchOptions{UID: true, Flags: true, BodySection: []*goimap.FetchItemBodySection{{Peek: true}}}).Collect()
		s.setFetching(false)
		if isExpungeIssued(err) {
			err = nil
		}
	case r < 67:
		if len(uids) == 0 {
			break
		}
		var set goimap.NumSet = uidSet(uids)
		if s.rnd.IntN(2) == 0 {
			set = seqSet(seqs)
		}
		_, err = s.c.Copy(set, s.other).Wait()
	case r < 72:
		if len(uids) == 0 {
			break
		}
		_, err = s.c.Move(uidSet(uids[:1]), s.other).Wait()
	case r < 77:
		err = s.c.Expunge().Close()
	case r < 81:
		if len(uids) == 0 {
			break
		}
		err = s.c.UIDExpunge(uidSet(uids[:1])).Close()
	case r < 90:
		var idle *imapclient.IdleCommand
		if idle, err = s.c.Idle(); err == nil {
			time.Sleep(time.Duration(1+s.rnd.IntN(5)) * time.Millisecond)
			if err = idle.Close(); err == nil {
				err = idle.Wait()
			}
		}
	default:
		err = s.c.Noop().Wait()
	}
	if err != nil {
		t.Errorf("session %d: command: %v", s.id, err)
	}
	for _, e := range s.takeErrs() {
		t.Error(e)
	}
}

// expect applies a STORE .SILENT to the view, as a client does.
func (s *confSession) expect(uids []uint32, fl []goimap.Flag, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range uids {
		cur, ok := s.flags[u]
		if !ok {
			continue
		}
		next := []string{}
		for _, f := range cur.flags {
			if add || !slices.ContainsFunc(fl, func(g goimap.Flag) bool { return strings.EqualFold(f, string(g)) }) {
				next = append(next, f)
			}
		}
		if add {
			for _, g := range fl {
				if g := strings.ToLower(string(g)); !slices.Contains(next, g) {
					next = append(next, g)
				}
			}
		}
		slices.Sort(next)
		// A guess from what the session knew: current no later than that.
		s.flags[u] = seen{flags: next, since: cur.since}
	}
}

// checkpoint brings the session up to date and compares its view with
// the store.
func (s *confSession) checkpoint(t *testing.T, st store.Backend, round int) {
	s.begin()
	if err := s.c.Noop().Wait(); err != nil {
		t.Fatalf("session %d: NOOP: %v", s.id, err)
	}
	s.learn(t)
	for _, e := range s.takeErrs() {
		t.Error(e)
	}
	_, msgs, err := st.Messages(context.Background(), alice, s.mailbox)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.uids) != len(msgs) || int(s.c.Mailbox().NumMessages) != len(msgs) {
		t.Errorf("checkpoint %d: session %d (%s) has %d messages (client EXISTS %d), the store %d", round, s.id, s.mailbox, len(s.uids), s.c.Mailbox().NumMessages, len(msgs))
		return
	}
	bad := 0
	for i, m := range msgs {
		want := storeFlagsLower(m)
		got := s.flags[s.uids[i]]
		if s.uids[i] != m.UID || !slices.Equal(got.flags, want) {
			if bad++; bad <= 5 {
				t.Errorf("checkpoint %d: session %d (%s): seq %d UID %d flags %v, the store UID %d flags %v", round, s.id, s.mailbox, i+1, s.uids[i], got.flags, m.UID, want)
			}
		}
	}
}

func storeFlagsLower(m store.Message) []string {
	out := []string{}
	for _, f := range m.Flags {
		out = append(out, strings.ToLower(f))
	}
	slices.Sort(out)
	return out
}

// checkModSeqs compares the MODSEQ of every message shown to a CONDSTORE
// session, and STATUS HIGHESTMODSEQ, with the store (at a checkpoint).
func (s *confSession) checkModSeqs(t *testing.T, st store.Backend, round int) {
	s.begin()
	if _, err := s.c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{UID: true, Flags: true, ModSeq: true}).Collect(); err != nil {
		t.Fatalf("session %d: FETCH MODSEQ: %v", s.id, err)
	}
	status, err := s.c.Status(s.mailbox, &goimap.StatusOptions{HighestModSeq: true}).Wait()
	if err != nil {
		t.Fatalf("session %d: STATUS: %v", s.id, err)
	}
	for _, e := range s.takeErrs() {
		t.Error(e)
	}
	mb, msgs, err := st.Messages(context.Background(), alice, s.mailbox)
	if err != nil {
		t.Fatal(err)
	}
	if status.HighestModSeq != mb.ModSeq {
		t.Errorf("checkpoint %d: session %d (%s): STATUS HIGHESTMODSEQ %d, the store %d", round, s.id, s.mailbox, status.HighestModSeq, mb.ModSeq)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	bad := 0
	for _, m := range msgs {
		if got := s.modseqs[m.UID]; got != m.ModSeq {
			if bad++; bad <= 5 {
				t.Errorf("checkpoint %d: session %d (%s): UID %d MODSEQ %d, the store %d", round, s.id, s.mailbox, m.UID, got, m.ModSeq)
			}
		}
	}
}

func (s *confSession) setFetching(on bool) {
	s.mu.Lock()
	s.inFetch = on
	s.mu.Unlock()
}
