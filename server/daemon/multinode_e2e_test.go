package daemon_test

import (
	"context"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/daemon"
	"github.com/mailctl/mailctl/server/pgstore"
)

// pgNode is a `mailctl serve` node on a PostgreSQL store.
type pgNode struct {
	*server
	cfg  *config.Config
	pool *x509.CertPool
}

// pgDatabase starts a PostgreSQL cluster, creates a database with the
// current schema and writes its URL to a file of mode 0600 (the form
// store.postgres_url_file wants). It returns the file's path.
func pgDatabase(t *testing.T) (urlFile, url string) {
	t.Helper()
	pg := testenv.StartPostgres(t)
	url = pg.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := pgstore.Migrate(ctx, url); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	urlFile = filepath.Join(t.TempDir(), "postgres-url")
	if err := os.WriteFile(urlFile, []byte(url+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return urlFile, url
}

// nodeConfig writes the configuration of node name on the store of
// urlFile, in a data directory of its own.
func nodeConfig(t *testing.T, name, urlFile string) (*config.Config, string) {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "server.json")
	cfg := baseConfig(t, filepath.Join(dir, "data"))
	cfg.LogLevel = "info"
	cfg.Store = &config.Store{PostgresURLFile: urlFile, Node: name}
	writeConfig(t, cfgPath, cfg)
	return cfg, cfgPath
}

func startNode(t *testing.T, name, urlFile string) *pgNode {
	t.Helper()
	return startNodeWith(t, name, urlFile, nil)
}

// startNodeWith starts a node whose configuration edit changed.
func startNodeWith(t *testing.T, name, urlFile string, edit func(*config.Config)) *pgNode {
	t.Helper()
	cfg, cfgPath := nodeConfig(t, name, urlFile)
	if edit != nil {
		edit(cfg)
		writeConfig(t, cfgPath, cfg)
	}
	srv := startServer(t, cfgPath)
	return &pgNode{server: srv, cfg: cfg, pool: roots(t, cfg.DataDir)}
}

// flagWatcher is an IMAP session in IDLE on INBOX that reports the flags
// of every unsolicited FETCH.
type flagWatcher struct {
	c     *imapclient.Client
	idle  *imapclient.IdleCommand
	flags chan []goimap.Flag
}

func watchFlags(t *testing.T, n *pgNode) *flagWatcher {
	t.Helper()
	w := &flagWatcher{flags: make(chan []goimap.Flag, 100)}
	w.c = dialIMAPS(t, n.addr("imaps"), n.pool, &imapclient.UnilateralDataHandler{
		Fetch: func(msg *imapclient.FetchMessageData) {
			for {
				item := msg.Next()
				if item == nil {
					return
				}
				if f, ok := item.(imapclient.FetchItemDataFlags); ok {
					w.flags <- f.Flags
				}
			}
		},
	})
	if err := w.c.Login("alice@example.test", "alice-pw").Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	if _, err := w.c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("select: %v", err)
	}
	var err error
	if w.idle, err = w.c.Idle(); err != nil {
		t.Fatalf("idle: %v", err)
	}
	return w
}

// TestNodesShareStore (issue 20): three `mailctl serve` nodes, each with
// its own data directory, on one PostgreSQL database. A message delivered
// over SMTP to node A is announced to IMAP IDLEs on nodes B and C within a
// second; a flag set over IMAP on B is announced to an IDLE on A within a
// second; a backup asked of a node is refused with the pg_dump advice.
func TestNodesShareStore(t *testing.T) {
	urlFile, _ := pgDatabase(t)
	a := startNode(t, "a", urlFile)
	b := startNode(t, "b", urlFile)
	c := startNode(t, "c", urlFile)

	onB := startIdle(t, b.addr("imaps"), b.pool, "alice@example.test", "alice-pw")
	onC := startIdle(t, c.addr("imaps"), c.pool, "alice@example.test", "alice-pw")
	sent := time.Now()
	if err := sendOne(a.addr("smtp"), messageFor("cross-node-1", 0, 0)); err != nil {
		t.Fatalf("deliver to node A: %v", err)
	}
	for name, ic := range map[string]*idleClient{"B": onB, "C": onC} {
		seen := ic.waitExists(t, 1, time.Second)
		if d := seen.Sub(sent); d > time.Second {
			t.Errorf("delivered on A, EXISTS on %s only after %v", name, d)
		}
		t.Logf("delivered on A, EXISTS on %s after %v", name, seen.Sub(sent).Round(time.Millisecond))
	}

	flagsOnA := watchFlags(t, a)
	setter := dialIMAPS(t, b.addr("imaps"), b.pool, nil)
	if err := setter.Login("alice@example.test", "alice-pw").Wait(); err != nil {
		t.Fatalf("login on B: %v", err)
	}
	if _, err := setter.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("select on B: %v", err)
	}
	set := time.Now()
	if err := setter.Store(goimap.SeqSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatalf("STORE on B: %v", err)
	}
	timer := time.NewTimer(time.Second)
	defer timer.Stop()
wait:
	for {
		select {
		case fl := <-flagsOnA.flags:
			if slices.Contains(fl, goimap.FlagFlagged) {
				t.Logf("flag set on B, FETCH on A after %v", time.Since(set).Round(time.Millisecond))
				break wait
			}
		case <-timer.C:
			t.Fatal("the IDLE on node A was not told within a second of the flag set on node B")
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var sink strings.Builder
	if _, err := daemon.Backup(ctx, a.socket, &sink, nil); err == nil || !strings.Contains(err.Error(), "the store is PostgreSQL: back it up with pg_dump (docs/operations.md)") {
		t.Errorf("backup of a PostgreSQL node: %v, want the pg_dump advice", err)
	}

	for _, n := range []*pgNode{a, b, c} {
		n.signal(syscall.SIGTERM)
		if err := n.wait(40 * time.Second); err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	}
}

// TestNodeRefusesBadStore: serve refuses to start, with one line and
// without the database password, on a URL file others may read and on a
// database whose schema was never created.
func TestNodeRefusesBadStore(t *testing.T) {
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t) // no schema
	const secret = "s3cret-pw"
	url = strings.Replace(url, "postgres@", "postgres:"+secret+"@", 1)
	urlFile := filepath.Join(t.TempDir(), "postgres-url")
	if err := os.WriteFile(urlFile, []byte(url+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(want string) {
		t.Helper()
		_, cfgPath := nodeConfig(t, "a", urlFile)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, mailctlBin, "serve", "-config", cfgPath).CombinedOutput()
		if err == nil {
			t.Fatalf("serve succeeded:\n%s", out)
		}
		var errLines []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.HasPrefix(l, "Error: ") {
				errLines = append(errLines, l)
			}
		}
		if len(errLines) != 1 || !strings.Contains(errLines[0], want) {
			t.Errorf("want one error line with %q, got:\n%s", want, out)
		} else {
			t.Logf("serve refused: %s", errLines[0])
		}
		if strings.Contains(string(out), secret) || strings.Contains(string(out), "goroutine") {
			t.Errorf("output shows the password or a stack trace:\n%s", out)
		}
	}
	run("is open to group or others (mode 0644)")
	if err := os.Chmod(urlFile, 0o600); err != nil {
		t.Fatal(err)
	}
	run("schema is older than this mailctl")
}

// TestKillNodeDuringIngestAndIMAP (issue 20): SMTP senders deliver to
// node A and IMAP sessions APPEND and STORE on it while it is killed with
// SIGKILL; node B, on the same PostgreSQL database, shows every
// acknowledged message once, intact, with every acknowledged flag.
func TestKillNodeDuringIngestAndIMAP(t *testing.T) {
	seed := killSeed(t)
	urlFile, _ := pgDatabase(t)
	a := startNode(t, "a", urlFile)
	b := startNode(t, "b", urlFile)

	load := startKillLoad(t, seed, a.addr("smtp"), a.addr("imaps"), a.pool, 2, 2)
	load.waitAcks(30, 60*time.Second)
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.wait(10 * time.Second)
	load.finish()
	if load.smtpAcks < 5 || load.appendAcks < 5 || load.storeAcks < 5 {
		t.Fatalf("too little acknowledged before the kill: %d deliveries, %d APPENDs, %d STOREs", load.smtpAcks, load.appendAcks, load.storeAcks)
	}
	load.check(t, b.addr("imaps"), b.pool)
	b.signal(syscall.SIGTERM)
	if err := b.wait(40 * time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

// TestNodesShareQueueGreylistAndLogins (issue 20): nodes on one PostgreSQL
// store share the outbound queue (a message submitted on node A is listed
// by node B's `mailctl queue`), the greylist (a sender deferred by node A
// is accepted by node B once the delay is over, where a greylist of B's
// own would defer it again) and the login failure counters (a client that
// failed twice on A and twice on B is locked out at 4 failures).
func TestNodesShareQueueGreylistAndLogins(t *testing.T) {
	urlFile, _ := pgDatabase(t)
	greylist := func(c *config.Config) {
		c.Inbound.Greylisting = true
		c.Inbound.GreylistDelay = config.Duration(time.Second)
		c.Limits.AuthFailuresPerIP = 4
		// Mail for elsewhere.test waits in the queue (a relay that refuses
		// connections: a temporary failure) instead of bouncing at once
		// when the machine's resolver says the domain does not exist.
		c.Relay = &config.Relay{Address: "127.0.0.1:9", Domains: []string{"elsewhere.test"}}
	}
	a := startNodeWith(t, "a", urlFile, greylist)
	b := startNodeWith(t, "b", urlFile, greylist)

	out, err := swaks(t, "--server", a.addr("submission"), "--tls", "--auth", "PLAIN",
		"--auth-user", "alice@example.test", "--auth-password", "alice-pw",
		"--from", "alice@example.test", "--to", "carol@elsewhere.test",
		"--header", "Subject: for the queue", "--body", "queued on A")
	if err != nil {
		t.Fatalf("submit on A: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs, err := daemon.QueueList(ctx, b.socket)
	if err != nil {
		t.Fatalf("queue list on B: %v", err)
	}
	if len(msgs) != 1 || msgs[0].Domain != "elsewhere.test" {
		t.Errorf("B's queue = %+v, want the message submitted on A for elsewhere.test", msgs)
	}

	body := messageFor("greylisted", 0, 0)
	if err := sendOne(a.addr("smtp"), body); err == nil || !strings.Contains(err.Error(), "451") {
		t.Fatalf("first attempt on A: %v, want a 451 (greylisted)", err)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := sendOne(b.addr("smtp"), body); err != nil {
		t.Fatalf("retry on B after the delay: %v, want it accepted (the greylist is shared)", err)
	}

	login := func(n *pgNode, pw string) error {
		c := dialIMAPS(t, n.addr("imaps"), n.pool, nil)
		defer c.Close()
		return c.Login("alice@example.test", pw).Wait()
	}
	for _, n := range []*pgNode{a, a, b, b} {
		if err := login(n, "wrong"); err == nil {
			t.Fatal("a wrong password was accepted")
		}
	}
	if err := login(b, "alice-pw"); err == nil {
		t.Error("the right password after 4 failures across the nodes (limit 4) was accepted: the nodes count failures apart")
	}
}
