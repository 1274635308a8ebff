package daemon_test

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// killSeed returns the seed of a kill test (MAILCTL_KILL_SEED replays a
// run, else the time) and prints it if the test fails.
func killSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("MAILCTL_KILL_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("MAILCTL_KILL_SEED: %v", err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replay with MAILCTL_KILL_SEED=%d", seed)
		}
	})
	return seed
}

// killLoad is mail traffic against one node that records what the node
// acknowledged: messages delivered over SMTP (250 to the end of DATA),
// messages appended over IMAP (tagged OK with APPENDUID) and flags added
// by STORE (tagged OK). Every message carries an X-Test-Token header, so
// that it can be found on another node, or after a restart, by content.
type killLoad struct {
	mu                              sync.Mutex
	messages                        map[string][]byte          // token -> body, acknowledged
	flags                           map[string]map[string]bool // token -> flags whose STORE was acknowledged
	smtpAcks, appendAcks, storeAcks int
	problems                        []string // protocol errors seen by the clients

	stop chan struct{}
	wg   sync.WaitGroup
}

// startKillLoad starts smtpClients SMTP senders to alice on smtpAddr and
// imapClients IMAP sessions on imapsAddr, each appending messages to
// alice's INBOX and adding flags to them.
func startKillLoad(t *testing.T, seed uint64, smtpAddr, imapsAddr string, pool *x509.CertPool, smtpClients, imapClients int) *killLoad {
	l := &killLoad{messages: map[string][]byte{}, flags: map[string]map[string]bool{}, stop: make(chan struct{})}
	for c := range smtpClients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; !l.stopped(); i++ {
				token := fmt.Sprintf("smtp-%d-%d-%d", seed%1000, c, i)
				body := messageFor(token, c, i)
				if err := sendOne(smtpAddr, body); err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				l.mu.Lock()
				l.messages[token] = body
				l.smtpAcks++
				l.mu.Unlock()
			}
		}()
	}
	for c := range imapClients {
		cl := dialIMAPS(t, imapsAddr, pool, nil)
		if err := cl.Login("alice@example.test", "alice-pw").Wait(); err != nil {
			t.Fatalf("login: %v", err)
		}
		if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
			t.Fatalf("select: %v", err)
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.imapSession(cl, rand.New(rand.NewPCG(seed, uint64(c))), c)
		}()
	}
	return l
}

var killFlags = []string{`\Flagged`, `\Seen`, `\Answered`, "$Label1", "Work"}

// imapSession appends messages and adds flags to the ones it appended
// until the connection fails (the node is killed) or the load stops.
func (l *killLoad) imapSession(cl *imapclient.Client, rnd *rand.Rand, c int) {
	var mine []goimap.UID
	tokens := map[goimap.UID]string{}
	for i := 0; !l.stopped(); i++ {
		if len(mine) == 0 || rnd.IntN(2) == 0 {
			token := fmt.Sprintf("imap-%d-%d", c, i)
			body := messageFor(token, 100+c, i)
			cmd := cl.Append("INBOX", int64(len(body)), nil)
			if _, err := cmd.Write(body); err != nil {
				return
			}
			if err := cmd.Close(); err != nil {
				return
			}
			data, err := cmd.Wait()
			if err != nil {
				return
			}
			if data.UID == 0 {
				l.mu.Lock()
				l.problems = append(l.problems, "APPEND answered without APPENDUID")
				l.mu.Unlock()
				return
			}
			mine = append(mine, data.UID)
			tokens[data.UID] = token
			l.mu.Lock()
			l.messages[token] = body
			l.appendAcks++
			l.mu.Unlock()
			continue
		}
		uid := mine[rnd.IntN(len(mine))]
		flag := killFlags[rnd.IntN(len(killFlags))]
		err := cl.Store(goimap.UIDSetNum(uid), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.Flag(flag)}}, nil).Close()
		if err != nil {
			return
		}
		l.mu.Lock()
		token := tokens[uid]
		if l.flags[token] == nil {
			l.flags[token] = map[string]bool{}
		}
		l.flags[token][strings.ToLower(flag)] = true
		l.storeAcks++
		l.mu.Unlock()
	}
}

func (l *killLoad) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// waitAcks waits until each kind of operation was acknowledged at least
// n times (or until within passed).
func (l *killLoad) waitAcks(n int, within time.Duration) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		ok := l.smtpAcks >= n && l.appendAcks >= n && l.storeAcks >= n
		l.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// finish stops the load and waits for its clients.
func (l *killLoad) finish() {
	close(l.stop)
	l.wg.Wait()
}

// storedMessage is a message as an IMAP session sees it.
type storedMessage struct {
	body  []byte
	flags []string // lower case
}

// fetchAll returns alice's INBOX on the node at imapsAddr, by token.
func fetchAll(t *testing.T, imapsAddr string, pool *x509.CertPool) map[string][]storedMessage {
	t.Helper()
	c := dialIMAPS(t, imapsAddr, pool, nil)
	if err := c.Login("alice@example.test", "alice-pw").Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatalf("select: %v", err)
	}
	out := map[string][]storedMessage{}
	if sel.NumMessages == 0 {
		return out
	}
	msgs, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{
		Flags: true, BodySection: []*goimap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	for _, m := range msgs {
		if len(m.BodySection) != 1 {
			t.Fatalf("message %d: %d body sections", m.SeqNum, len(m.BodySection))
		}
		b := m.BodySection[0].Bytes
		token := headerValue(b, "X-Test-Token")
		var fl []string
		for _, f := range m.Flags {
			fl = append(fl, strings.ToLower(string(f)))
		}
		out[token] = append(out[token], storedMessage{body: b, flags: fl})
	}
	c.Logout().Wait()
	return out
}

// check compares what the load had acknowledged with alice's INBOX as
// the node at imapsAddr shows it: every acknowledged message there once,
// intact, with every flag whose STORE was acknowledged; no message twice.
func (l *killLoad) check(t *testing.T, imapsAddr string, pool *x509.CertPool) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.problems {
		t.Error(p)
	}
	got := fetchAll(t, imapsAddr, pool)
	bad := 0
	report := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(format, args...)
		}
	}
	for token, ms := range got {
		if token == "" {
			report("a stored message has no X-Test-Token")
		} else if len(ms) > 1 {
			report("message %s stored %d times", token, len(ms))
		}
	}
	missing, flagsLost := 0, 0
	for token, body := range l.messages {
		ms := got[token]
		if len(ms) == 0 {
			missing++
			report("acknowledged message %s is missing", token)
			continue
		}
		if !bytes.HasSuffix(ms[0].body, body) {
			report("message %s is not intact: stored %d bytes, sent %d", token, len(ms[0].body), len(body))
		}
		for f := range l.flags[token] {
			if !slices.Contains(ms[0].flags, f) {
				flagsLost++
				report("message %s: acknowledged flag %s missing (has %v)", token, f, ms[0].flags)
			}
		}
	}
	t.Logf("acknowledged: %d SMTP deliveries, %d APPENDs, %d STOREs; stored: %d messages; missing %d, flags lost %d",
		l.smtpAcks, l.appendAcks, l.storeAcks, len(got), missing, flagsLost)
}

// TestKillDuringIngestAndIMAP (issue 20 on the embedded store): SMTP
// senders deliver and IMAP sessions APPEND and STORE while the server is
// killed with SIGKILL; after a restart every acknowledged message is
// there once, intact, with every acknowledged flag.
func TestKillDuringIngestAndIMAP(t *testing.T) {
	seed := killSeed(t)
	dir := t.TempDir()
	cfgPath := dir + "/server.json"
	cfg := baseConfig(t, dir+"/data")
	cfg.LogLevel = "info"
	writeConfig(t, cfgPath, cfg)
	srv := startServer(t, cfgPath)
	pool := roots(t, cfg.DataDir)

	load := startKillLoad(t, seed, srv.addr("smtp"), srv.addr("imaps"), pool, 2, 2)
	load.waitAcks(30, 60*time.Second)
	if err := srv.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	srv.wait(10 * time.Second)
	load.finish()
	if load.smtpAcks < 5 || load.appendAcks < 5 || load.storeAcks < 5 {
		t.Fatalf("too little acknowledged before the kill: %d deliveries, %d APPENDs, %d STOREs", load.smtpAcks, load.appendAcks, load.storeAcks)
	}

	srv2 := startServer(t, cfgPath)
	load.check(t, srv2.addr("imaps"), pool)
	srv2.signal(syscall.SIGTERM)
	if err := srv2.wait(40 * time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}
