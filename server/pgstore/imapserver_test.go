package pgstore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailctl/mailctl/server/imap"
	"github.com/mailctl/mailctl/server/store"
)

type testAuth struct{}

func (testAuth) Authenticate(_ context.Context, username, password string, _ net.Addr) (string, error) {
	if username == alice && password == "pw" {
		return alice, nil
	}
	return "", errors.New("bad password")
}

// serveIMAP runs server/imap, unchanged, on s and returns its address
// (plain text on loopback, where LOGIN is allowed).
func serveIMAP(t testing.TB, s store.Backend) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := imap.New(s, testAuth{}, imap.Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func dialIMAP(t testing.TB, addr string, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := imapclient.New(raw, &imapclient.Options{UnilateralDataHandler: h})
	t.Cleanup(func() { c.Close() })
	if err := c.Login(alice, "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// testIMAPTwoNodes runs server/imap on two Stores of one database (two
// nodes), with bodies in chunks of 1000 bytes: a session IDLE on node A
// hears within a second the APPEND, MOVE and EXPUNGE of a session on node
// B, and FETCHes what B appended (BODY[] across chunks, ENVELOPE from the
// summary captured at delivery).
func testIMAPTwoNodes(t *testing.T, url string) {
	a := newUser(t, url, 0)
	b := open(t, url)
	a.chunkSize, b.chunkSize = 1000, 1000
	addrA, addrB := serveIMAP(t, a), serveIMAP(t, b)

	exists := make(chan uint32, 16)
	expunged := make(chan uint32, 16)
	ca := dialIMAP(t, addrA, &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
		Expunge: func(seq uint32) { expunged <- seq },
	})
	cb := dialIMAP(t, addrB, nil)
	if _, err := ca.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := ca.Idle()
	if err != nil {
		t.Fatal(err)
	}
	body := "From: bob@example.test\r\nSubject: across nodes\r\n\r\n" + strings.Repeat("a line of the body, long enough\r\n", 150)
	app := cb.Append("INBOX", int64(len(body)), nil)
	if _, err := app.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Wait(); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-exists:
		if n != 1 {
			t.Fatalf("node A: EXISTS %d, want 1", n)
		}
	case <-time.After(time.Second):
		t.Fatal("node A heard no EXISTS within a second of node B's APPEND")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := ca.Fetch(goimap.SeqSetNum(1), &goimap.FetchOptions{
		UID: true, Envelope: true, BodySection: []*goimap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH on node A: %v, %v", msgs, err)
	}
	if msgs[0].Envelope == nil || msgs[0].Envelope.Subject != "across nodes" {
		t.Errorf("ENVELOPE on node A: %+v", msgs[0].Envelope)
	}
	var got []byte
	for _, v := range msgs[0].BodySection {
		got = v.Bytes
	}
	if string(got) != body {
		t.Errorf("BODY[] on node A: %d bytes, want the %d appended", len(got), len(body))
	}

	idle, err = ca.Idle()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Move(goimap.SeqSetNum(1), "Archive").Wait(); err != nil {
		t.Fatal(err)
	}
	select {
	case seq := <-expunged:
		if seq != 1 {
			t.Fatalf("node A: EXPUNGE %d, want 1", seq)
		}
	case <-time.After(time.Second):
		t.Fatal("node A heard no EXPUNGE within a second of node B's MOVE")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	st, err := ca.Status("Archive", &goimap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || st.NumMessages == nil || *st.NumMessages != 1 {
		t.Fatalf("STATUS Archive on node A: %+v, %v", st, err)
	}

	// QRESYNC on node A, from the MODSEQ before node B's MOVE: the UID
	// moved away is VANISHED (EARLIER), from the store's records.
	inbox := mailboxOf(t, a, "INBOX")
	ranges, _, err := a.Vanished(ctxT(t), alice, inbox.ID, 0)
	if err != nil || len(ranges) != 1 {
		t.Fatalf("Vanished: %v, %v", ranges, err)
	}
	before := inbox.ModSeq - 1
	raw, err := net.Dial("tcp", addrA)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewConn(raw)
	if _, err := tp.ReadLine(); err != nil {
		t.Fatal(err)
	}
	command := func(tag, cmd string) []string {
		t.Helper()
		if err := tp.PrintfLine("%s %s", tag, cmd); err != nil {
			t.Fatal(err)
		}
		var lines []string
		for {
			l, err := tp.ReadLine()
			if err != nil {
				t.Fatalf("%s: %v", cmd, err)
			}
			lines = append(lines, l)
			if strings.HasPrefix(l, tag+" ") {
				if !strings.HasPrefix(l, tag+" OK") {
					t.Fatalf("%s: %q", cmd, lines)
				}
				return lines
			}
		}
	}
	command("a", "LOGIN "+alice+" pw")
	command("b", "ENABLE QRESYNC")
	lines := command("c", fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d))", inbox.UIDValidity, before))
	if want := "* VANISHED (EARLIER) 1"; !slices.Contains(lines, want) {
		t.Errorf("SELECT with QRESYNC on node A: %q, want %q", lines, want)
	}
}
