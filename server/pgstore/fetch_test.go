package pgstore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/store"
)

// TestPostgresFetchSameBytes: FETCH of message bodies on a pgstore-backed
// IMAP server, whose bodies are read ahead in batches while the ones
// before are written, answers byte for byte what the embedded store's
// answers: every body of 600 messages of every size (some in several
// chunks, read by OpenBody), in ranges starting and ending anywhere, by
// 4 clients at once.
func TestPostgresFetchSameBytes(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the Debian PostgreSQL package: Linux only")
	}
	const n, chunk = 600, 16 << 10
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	pgc := testenv.StartPostgres(t)
	pg := newUser(t, pgc.NewDatabase(t), 0)
	pg.chunkSize = chunk
	emb, err := store.Open(ctxT(t), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	if err := emb.EnsureUser(ctxT(t), alice, 0); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		size := rng.IntN(24 << 10)
		if rng.IntN(50) == 0 {
			size = 100<<10 + rng.IntN(100<<10)
		}
		m := fetchBenchMessage(i, size)
		deliver(t, pg, "INBOX", m)
		if _, err := emb.Deliver(ctxT(t), alice, "INBOX", strings.NewReader(m), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	var cmds [4][]string
	for c := range cmds {
		for range 3 {
			lo := 1 + rng.IntN(n)
			hi := lo + rng.IntN(n-lo+1)
			cmds[c] = append(cmds[c], fmt.Sprintf("FETCH %d:%d (UID BODY.PEEK[])", lo, hi))
		}
		cmds[c] = append(cmds[c], "FETCH 1:* (BODY.PEEK[] BODY.PEEK[TEXT]<100.500>)")
	}
	answers := func(addr string) [4]string {
		var out [4]string
		var wg sync.WaitGroup
		for c := range cmds {
			f := dialRaw(t, addr)
			f.keep = &bytes.Buffer{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, cmd := range cmds[c] {
					f.run(t, cmd)
				}
				out[c] = f.keep.String()
			}()
		}
		wg.Wait()
		return out
	}
	got := answers(serveIMAP(t, pg))
	want := answers(serveIMAP(t, emb))
	for c := range cmds {
		if got[c] != want[c] {
			i := 0
			for i < len(got[c]) && i < len(want[c]) && got[c][i] == want[c][i] {
				i++
			}
			t.Errorf("seed %d: client %d (%q): pgstore's answer differs from the embedded store's at byte %d of %d and %d",
				seed, c, cmds[c], i, len(got[c]), len(want[c]))
		}
	}
}
