package storecopy_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/imap"
	"github.com/mailctl/mailctl/server/pgstore"
	"github.com/mailctl/mailctl/server/store"
	"github.com/mailctl/mailctl/server/storecopy"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

var users = []string{"alice@example.org", "bob@example.org", "carol@example.net"}

// fill makes a store with several users, mailboxes renamed, with special
// use, unsubscribed, a subscription left by a deleted mailbox, random
// messages (some in files, some in the index), flags, and expunged and
// moved UIDs.
func fill(t *testing.T, ctx context.Context, st *store.Store, rng *mrand.Rand) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, u := range users {
		must(st.EnsureUser(ctx, u, int64(i)*10<<20))
		must(st.CreateMailbox(ctx, u, "Work", ""))
		must(st.CreateMailbox(ctx, u, "Work/2024", ""))
		must(st.CreateMailbox(ctx, u, "Lists", ""))
		must(st.SetSubscribed(ctx, u, "Lists", false))
		must(st.CreateMailbox(ctx, u, "Old", ""))
		must(st.DeleteMailbox(ctx, u, "Old")) // stays subscribed
		must(st.CreateMailbox(ctx, u, "Everything", `\All`))
		must(st.RenameMailbox(ctx, u, "Archive", "Saved"))
		must(st.RenameMailbox(ctx, u, "Work", "Projects"))
		mbs, err := st.Mailboxes(ctx, u)
		must(err)
		for _, mb := range mbs {
			n := rng.IntN(25)
			for j := 0; j < n; j++ {
				size := rng.IntN(3000)
				if rng.IntN(15) == 0 {
					size = store.MaxInlineBody + rng.IntN(50000) // a body file
				}
				body := fmt.Sprintf("From: a@example.org\r\nSubject: %s %d\r\n\r\n%s\r\n", mb.Name, j, strings.Repeat(string(rune('a'+rng.IntN(26))), size))
				var flags []string
				for _, f := range []string{store.FlagSeen, store.FlagFlagged, store.FlagAnswered, "$Label1", "Junk"} {
					if rng.IntN(3) == 0 {
						flags = append(flags, f)
					}
				}
				date := time.Unix(1600000000+rng.Int64N(1e8), rng.Int64N(1e9))
				_, err := st.Deliver(ctx, u, mb.Name, strings.NewReader(body), flags, date)
				must(err)
			}
			_, msgs, err := st.Messages(ctx, u, mb.Name)
			must(err)
			var del, seen []uint32
			for _, m := range msgs {
				switch rng.IntN(5) {
				case 0:
					del = append(del, m.UID)
				case 1:
					seen = append(seen, m.UID)
				}
			}
			_, err = st.SetFlags(ctx, u, mb.Name, del, store.FlagsAdd, []string{store.FlagDeleted})
			must(err)
			_, err = st.Expunge(ctx, u, mb.Name, nil)
			must(err)
			_, err = st.SetFlags(ctx, u, mb.Name, seen, store.FlagsReplace, []string{store.FlagSeen, "$Later"})
			must(err)
		}
		if i == 0 { // larger than PostgreSQL's chunks of 1 MiB
			body := "Subject: large\r\n\r\n" + strings.Repeat("0123456789abcde\n", 100000)
			_, err := st.Deliver(ctx, u, store.Inbox, strings.NewReader(body), nil, time.Time{})
			must(err)
		}
		// Moves leave gaps too.
		_, msgs, err := st.Messages(ctx, u, store.Inbox)
		must(err)
		if len(msgs) > 2 {
			_, err = st.Move(ctx, u, store.Inbox, []uint32{msgs[1].UID}, "Projects/2024")
			must(err)
		}
	}
}

// snapshot is everything a copy keeps, read through the read API; dates
// to the microsecond (what PostgreSQL keeps) unless exact.
func snapshot(t *testing.T, ctx context.Context, src storecopy.Source, exact bool) string {
	t.Helper()
	var sb strings.Builder
	us, err := src.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		q, err := src.Quota(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&sb, "user %s quota %d\n", u, q)
		mbs, err := src.Mailboxes(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		for _, mb := range mbs {
			fmt.Fprintf(&sb, " %s uidvalidity=%d uidnext=%d highestmodseq=%d use=%q subscribed=%v messages=%d size=%d recent=%d\n",
				mb.Name, mb.UIDValidity, mb.UIDNext, mb.ModSeq, mb.SpecialUse, mb.Subscribed, mb.Messages, mb.Size, mb.RecentUID)
			_, msgs, err := src.Messages(ctx, u, mb.Name)
			if err != nil {
				t.Fatal(err)
			}
			// The headers cached for IMAP (FETCH ENVELOPE, header SEARCH).
			var hdrs [][]byte
			if h, ok := src.(headerReader); ok && len(msgs) > 0 {
				uids := make([]uint32, len(msgs))
				for i, m := range msgs {
					uids[i] = m.UID
				}
				if hdrs, err = h.Headers(ctx, u, mb.ID, uids); err != nil {
					t.Fatal(err)
				}
			}
			for i, m := range msgs {
				if hdrs != nil {
					fmt.Fprintf(&sb, "  header %q\n", hdrs[i])
				}
				b, err := src.OpenBody(ctx, m)
				if err != nil {
					t.Fatal(err)
				}
				h := sha256.New()
				_, err = io.Copy(h, b)
				b.Close()
				if err != nil {
					t.Fatal(err)
				}
				d := m.InternalDate.UTC()
				if !exact {
					d = d.Truncate(time.Microsecond)
				}
				fmt.Fprintf(&sb, "  uid=%d modseq=%d flags=%v date=%s size=%d body=%x\n", m.UID, m.ModSeq, m.Flags, d.Format(time.RFC3339Nano), m.Size, h.Sum(nil)[:8])
			}
		}
		gone, err := src.GoneSubscriptions(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&sb, " subscribed without mailbox: %q\n", gone)
	}
	return sb.String()
}

type headerReader interface {
	Headers(ctx context.Context, user string, mailboxID uint64, uids []uint32) ([][]byte, error)
}

// cancelAfter is a Source whose context is cancelled after n bodies.
type cancelAfter struct {
	storecopy.Source
	n      atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelAfter) OpenBody(ctx context.Context, m store.Message) (store.Body, error) {
	if c.n.Add(-1) == 0 {
		c.cancel()
	}
	return c.Source.OpenBody(ctx, m)
}

// copyInterrupted copies src to dst, cancelled after n bodies, then again
// to the end; it returns the stats of the second run.
func copyInterrupted(t *testing.T, src storecopy.Source, dst storecopy.Destination, n int64) storecopy.Stats {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxT(t))
	ca := &cancelAfter{Source: src, cancel: cancel}
	ca.n.Store(n)
	var out strings.Builder
	if _, err := storecopy.Copy(ctx, ca, dst, storecopy.Options{Progress: &out}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted copy: %v", err)
	}
	t.Logf("interrupted copy:\n%s", out.String())
	out.Reset()
	stats, err := storecopy.Copy(ctxT(t), src, dst, storecopy.Options{Progress: &out})
	if err != nil {
		t.Fatalf("resumed copy: %v\n%s", err, out.String())
	}
	t.Logf("resumed copy: %+v\n%s", stats, out.String())
	if stats.Skipped == 0 {
		t.Errorf("resumed copy skipped nothing: %+v", stats)
	}
	return stats
}

// TestRoundTrip: embedded -> PostgreSQL -> embedded, each copy interrupted
// mid-way and resumed, keeps every UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ,
// UID, MODSEQ, flag, date and body, the special use and subscriptions;
// a copy run again skips everything; an IMAP client that synchronised
// with the source finds nothing changed on PostgreSQL nor back on the
// embedded store (server/imap on each).
func TestRoundTrip(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the Debian PostgreSQL package: Linux only")
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(uint64(seed), 1))
	ctx := ctxT(t)
	a := openStore(t)
	fill(t, ctx, a, rng)
	seen := imapState(t, a) // takes the \Recent marks
	want := snapshot(t, ctx, a, false)
	if !strings.Contains(want, `subscribed without mailbox: ["Old"]`) {
		t.Fatalf("source without the subscription left by a deletion:\n%s", want)
	}

	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	if _, _, err := pgstore.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	p, err := pgstore.Open(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	copyInterrupted(t, a, p, 30)
	if got := snapshot(t, ctx, p, false); got != want {
		t.Fatalf("on PostgreSQL:\n%s\nwant:\n%s", got, want)
	}
	stats, err := storecopy.Copy(ctx, a, p, storecopy.Options{})
	if err != nil || stats.Mailboxes != 0 || stats.Messages != 0 {
		t.Fatalf("copy again: %+v, %v", stats, err)
	}

	b := openStore(t)
	copyInterrupted(t, p, b, 40)
	if got := snapshot(t, ctx, b, false); got != want {
		t.Fatalf("back on the embedded store:\n%s\nwant:\n%s", got, want)
	}
	for _, u := range users {
		au, an, _ := a.Usage(ctx, u)
		bu, bn, _ := b.Usage(ctx, u)
		if au != bu || an != bn {
			t.Errorf("%s: usage %d bytes %d messages, want %d, %d", u, bu, bn, au, an)
		}
	}
	if got := imapState(t, p); got != seen {
		t.Errorf("IMAP on PostgreSQL:\n%s\nwant:\n%s", got, seen)
	}
	checkNothingChanged(t, p, seen)
	if got := imapState(t, b); got != seen {
		t.Errorf("IMAP on the copy:\n%s\nwant:\n%s", got, seen)
	}
	checkNothingChanged(t, b, seen)
}

// TestEmbeddedCopy: embedded -> embedded keeps the dates to the
// nanosecond and the subscriptions to deleted mailboxes.
func TestEmbeddedCopy(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(uint64(seed), 2))
	ctx := ctxT(t)
	a := openStore(t)
	fill(t, ctx, a, rng)
	seen := imapState(t, a) // takes the \Recent marks
	want := snapshot(t, ctx, a, true)
	if !strings.Contains(want, `subscribed without mailbox: ["Old"]`) {
		t.Fatalf("source without the subscription left by a deletion:\n%s", want)
	}
	b := openStore(t)
	copyInterrupted(t, a, b, 25)
	if got := snapshot(t, ctx, b, true); got != want {
		t.Fatalf("copy:\n%s\nwant:\n%s", got, want)
	}
	if got := imapState(t, b); got != seen {
		t.Errorf("IMAP on the copy:\n%s\nwant:\n%s", got, seen)
	}
	checkNothingChanged(t, b, seen)
}

const password = "secret"

type anyUser struct{}

func (anyUser) Authenticate(ctx context.Context, username, pw string, remote net.Addr) (string, error) {
	if pw != password {
		return "", errors.New("bad password")
	}
	return username, nil
}

// serveIMAP serves st on a loopback port with implicit TLS.
func serveIMAP(t *testing.T, st store.Backend) (addr string, clientTLS *tls.Config) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := imap.New(st, anyUser{}, imap.Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, ImplicitTLS: true})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

func login(t *testing.T, addr string, cfg *tls.Config, user string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// imapState is what a client caches of every mailbox of every user: the
// SELECT (CONDSTORE) data and each message's UID, MODSEQ, flags and
// INTERNALDATE, and the subscriptions.
// \Recent is a session's, not cached, and left out.
func imapState(t *testing.T, st store.Backend) string {
	t.Helper()
	addr, cfg := serveIMAP(t, st)
	var sb strings.Builder
	for _, u := range users {
		c := login(t, addr, cfg, u)
		list, err := c.List("", "*", nil).Collect()
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(list, func(a, b *goimap.ListData) int { return strings.Compare(a.Mailbox, b.Mailbox) })
		for _, l := range list {
			sel, err := c.Select(l.Mailbox, &goimap.SelectOptions{CondStore: true}).Wait()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&sb, "%s %s %v uidvalidity=%d uidnext=%d highestmodseq=%d exists=%d\n", u, l.Mailbox, l.Attrs, sel.UIDValidity, sel.UIDNext, sel.HighestModSeq, sel.NumMessages)
			if sel.NumMessages == 0 {
				continue
			}
			msgs, err := c.Fetch(goimap.UIDSet{goimap.UIDRange{Start: 1, Stop: 0}}, &goimap.FetchOptions{UID: true, Flags: true, ModSeq: true, InternalDate: true, RFC822Size: true}).Collect()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				m.Flags = slices.DeleteFunc(m.Flags, func(f goimap.Flag) bool { return f == `\Recent` })
				fmt.Fprintf(&sb, "  %d modseq=%d %v %s %d\n", m.UID, m.ModSeq, m.Flags, m.InternalDate.UTC().Format(time.RFC3339), m.RFC822Size)
			}
		}
		subs, err := c.List("", "*", &goimap.ListOptions{SelectSubscribed: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range subs {
			names = append(names, l.Mailbox)
		}
		slices.Sort(names)
		fmt.Fprintf(&sb, "%s subscribed %q\n", u, names)
		c.Logout().Wait()
	}
	return sb.String()
}

// checkNothingChanged: a client that cached the source's state, on the
// copy, asks for what changed since its HIGHESTMODSEQ: nothing.
func checkNothingChanged(t *testing.T, st store.Backend, seen string) {
	t.Helper()
	addr, cfg := serveIMAP(t, st)
	for _, line := range strings.Split(seen, "\n") {
		var u, name string
		var validity, next, highest, exists uint64
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasPrefix(f[len(f)-4], "uidvalidity=") {
			continue
		}
		u, name = f[0], f[1]
		fmt.Sscanf(f[len(f)-4]+" "+f[len(f)-3]+" "+f[len(f)-2]+" "+f[len(f)-1], "uidvalidity=%d uidnext=%d highestmodseq=%d exists=%d", &validity, &next, &highest, &exists)
		c := login(t, addr, cfg, u)
		sel, err := c.Select(name, &goimap.SelectOptions{CondStore: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if uint64(sel.UIDValidity) != validity || uint64(sel.HighestModSeq) != highest || uint64(sel.UIDNext) != next {
			t.Errorf("%s %s: UIDVALIDITY %d HIGHESTMODSEQ %d UIDNEXT %d, the client cached %d %d %d", u, name, sel.UIDValidity, sel.HighestModSeq, sel.UIDNext, validity, highest, next)
		}
		if exists > 0 {
			changed, err := c.Fetch(goimap.UIDSet{goimap.UIDRange{Start: 1, Stop: 0}}, &goimap.FetchOptions{UID: true, Flags: true, ChangedSince: highest}).Collect()
			if err != nil {
				t.Fatal(err)
			}
			if len(changed) != 0 {
				t.Errorf("%s %s: %d messages changed since HIGHESTMODSEQ %d", u, name, len(changed), highest)
			}
		}
		c.Logout().Wait()
	}
}

// deliverDuring is a Source that delivers a message into the mailbox
// being copied, as a node left running would.
type deliverDuring struct {
	*store.Store
	once bool
}

func (d *deliverDuring) OpenBody(ctx context.Context, m store.Message) (store.Body, error) {
	if !d.once {
		d.once = true
		if _, err := d.Store.Deliver(ctx, users[0], store.Inbox, strings.NewReader("Subject: late\r\n\r\n"), nil, time.Time{}); err != nil {
			return nil, err
		}
	}
	return d.Store.OpenBody(ctx, m)
}

// TestSourceChanged: a message delivered into the source during the copy
// stops it with one line telling to stop serve.
func TestSourceChanged(t *testing.T) {
	ctx := ctxT(t)
	a := openStore(t)
	fill(t, ctx, a, mrand.New(mrand.NewPCG(1, 2)))
	_, err := storecopy.Copy(ctx, &deliverDuring{Store: a}, openStore(t), storecopy.Options{})
	if !errors.Is(err, storecopy.ErrSourceChanged) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "stop every mailctl serve") {
		t.Fatalf("copy of a source that changed: %v", err)
	}
	t.Log(err)
}
