package imap_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/pgstore"
	"github.com/mailctl/mailctl/server/store"
)

// lineClient is an IMAP4rev1 client that sends commands and returns the
// untagged lines of their answers.
type lineClient struct {
	t    *testing.T
	c    net.Conn
	br   *bufio.Reader
	tagN int
}

func dialLines(t *testing.T, addr string) *lineClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	lc := &lineClient{t: t, c: c, br: bufio.NewReader(c)}
	if _, err := lc.br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	lc.run("LOGIN " + alice + " " + alicePW)
	return lc
}

func (lc *lineClient) run(cmd string) []string {
	lc.t.Helper()
	lc.tagN++
	tag := fmt.Sprintf("c%d ", lc.tagN)
	fmt.Fprintf(lc.c, "%s%s\r\n", tag, cmd)
	var out []string
	for {
		line, err := lc.br.ReadString('\n')
		if err != nil {
			lc.t.Fatalf("%s: %v", cmd, err)
		}
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, tag) {
			if !strings.HasPrefix(line, tag+"OK") {
				lc.t.Fatalf("%s: %s", cmd, line)
			}
			return out
		}
		out = append(out, line)
	}
}

// selectState is what a SELECT and a FETCH of every message tell a
// client: the lines that describe the mailbox, sorted, PERMANENTFLAGS
// and the read-only mark aside (EXAMINE's differ).
func selectState(lc *lineClient, cmd string) []string {
	var out []string
	for _, l := range lc.run(cmd) {
		if strings.Contains(l, "PERMANENTFLAGS") || strings.Contains(l, "READ-") {
			continue
		}
		out = append(out, l)
	}
	slices.Sort(out)
	return append(out, lc.run("FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)")...)
}

var recentLine = regexp.MustCompile(`^\* (\d+) RECENT$`)

func recentOf(lines []string) string {
	for _, l := range lines {
		if m := recentLine.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	return "none"
}

// TestIdleSnapshotIsFreshRead: the snapshot a node keeps of a mailbox no
// session has selected gives the next SELECT what a fresh read of the
// store gives (a new server's EXAMINE just before), on the embedded store
// and on PostgreSQL (where it is brought up to date with the changes made
// meanwhile, here by another node): the same messages, flags, FLAGS list
// (a keyword no message has any more is gone), UIDNEXT and \Recent (each
// new message once), after changes, a rename, and a mailbox deleted and
// made again under its name.
func TestIdleSnapshotIsFreshRead(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		env := newEnv(t, 0)
		testIdleSnapshot(t, env.st, env.st)
	})
	t.Run("postgres", func(t *testing.T) {
		if runtime.GOOS != "linux" {
			t.Skip("the Debian PostgreSQL package: Linux only")
		}
		pg := testenv.StartPostgres(t)
		url := pg.NewDatabase(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, _, err := pgstore.Migrate(ctx, url); err != nil {
			t.Fatal(err)
		}
		var nodes []*pgstore.Store
		for range 2 {
			st, err := pgstore.Open(ctx, url, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			nodes = append(nodes, st)
		}
		if err := nodes[0].EnsureUser(ctx, alice, 0); err != nil {
			t.Fatal(err)
		}
		testIdleSnapshot(t, nodes[0], nodes[1])
	})
}

func testIdleSnapshot(t *testing.T, st, other store.Backend) {
	ctx := context.Background()
	auth := &passwords{users: map[string]string{alice: alicePW}}
	addr := servePlain(t, st, auth) // the node that keeps snapshots
	deliver := func(box, subject string, flags ...string) {
		t.Helper()
		if _, err := other.Deliver(ctx, alice, box, strings.NewReader(mail(subject)), flags, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	// check SELECTs box on the node (in a session that logs out, leaving
	// the snapshot kept) and compares with a new server's EXAMINE.
	check := func(step, box, wantRecent string) {
		t.Helper()
		fresh := selectState(dialLines(t, servePlain(t, st, auth)), "EXAMINE "+box)
		lc := dialLines(t, addr)
		got := selectState(lc, "SELECT "+box)
		lc.run("LOGOUT")
		if r := recentOf(got); r != wantRecent {
			t.Errorf("%s: RECENT %s, want %s", step, r, wantRecent)
		}
		// The fresh EXAMINE counts as \Recent what the SELECT claimed.
		// and a session has \Recent for what it claimed.
		fresh = slices.DeleteFunc(fresh, recentLine.MatchString)
		got = slices.DeleteFunc(got, recentLine.MatchString)
		for i, l := range got {
			got[i] = strings.NewReplacer(` \Recent)`, ")", `\Recent)`, ")", `\Recent `, "").Replace(l)
		}
		if !slices.Equal(got, fresh) {
			t.Errorf("%s: SELECT of the kept snapshot:\n%s\nfresh read:\n%s", step, strings.Join(got, "\n"), strings.Join(fresh, "\n"))
		}
	}
	if err := other.CreateMailbox(ctx, alice, "Box", ""); err != nil {
		t.Fatal(err)
	}
	deliver("Box", "one", "$Old")
	deliver("Box", "two")
	check("first SELECT", "Box", "2")
	check("unchanged", "Box", "0")

	if _, err := other.SetFlags(ctx, alice, "Box", []uint32{1}, store.FlagsRemove, []string{"$Old"}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.SetFlags(ctx, alice, "Box", []uint32{2}, store.FlagsAdd, []string{store.FlagSeen, "$New"}); err != nil {
		t.Fatal(err)
	}
	deliver("Box", "three")
	if _, err := other.Expunge(ctx, alice, "Box", []uint32{1}); err != nil {
		t.Fatal(err)
	}
	check("after changes", "Box", "1")
	check("unchanged again", "Box", "0")

	if err := other.RenameMailbox(ctx, alice, "Box", "Renamed"); err != nil {
		t.Fatal(err)
	}
	deliver("Renamed", "four")
	check("renamed", "Renamed", "1")

	if err := other.DeleteMailbox(ctx, alice, "Renamed"); err != nil {
		t.Fatal(err)
	}
	if err := other.CreateMailbox(ctx, alice, "Renamed", ""); err != nil {
		t.Fatal(err)
	}
	deliver("Renamed", "five")
	check("made again", "Renamed", "1")
}
