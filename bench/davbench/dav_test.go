// Package davbench measures CalDAV and CardDAV servers on the operations
// of issue 19's benchmark: a full REPORT of a 5 000-event calendar
// (calendar-query) and of a 5 000-contact address book
// (addressbook-query), all data returned, and a sync-collection (RFC 6578)
// after 10 changes, with the server's resident memory. Requests are raw
// HTTP with fixed XML bodies and the answers are read to the end, not
// parsed, so that the client costs the same for every server.
//
// Each server's data is written by another process before the measure
// (Radicale's object files by this one; the bundled server's store by a
// seeding child, after which the server starts on it), and "extra
// resident memory" is what serving the benchmark's requests (the REPORTs,
// the 20 PUTs and the sync-collections) adds to the resident memory
// (VmRSS) of the server idle with that data: started, the collections
// looked up once by a Depth: 0 PROPFIND, no other request. Both servers
// run in processes of their own and are measured the same way.
package davbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/dav"
)

// davServer is a server under test, its user's calendar and address book
// created and empty.
type davServer struct {
	name           string
	url            string // root, ending in "/"
	user, password string
	cal, book      string // collection paths
	// seed writes n events or contacts faster than PUTs can, or is nil.
	seed func(b *testing.B, coll, ext string, n int, gen func(i int) string)
	// rss returns the resident and peak resident memory in bytes.
	rss func() (int64, int64)
	// pid is the server's process, for the split of its resident memory
	// (0: this process, in-process mode).
	pid int
}

func objects() int {
	if n, err := strconv.Atoi(os.Getenv("DAVBENCH_OBJECTS")); err == nil && n > 0 {
		return n
	}
	return 5000
}

func event(i int) string {
	rrule := ""
	if i%10 == 0 {
		rrule = "RRULE:FREQ=WEEKLY;COUNT=20\r\n"
	}
	day := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * 7 * time.Hour)
	return fmt.Sprintf("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mailctl//davbench//EN\r\nBEGIN:VEVENT\r\n"+
		"UID:bench-ev-%d@example.org\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:%s\r\nDTEND:%s\r\n%s"+
		"SUMMARY:Meeting %d about the quarterly plan\r\nLOCATION:Room %d\r\nDESCRIPTION:Agenda item %d: review, decide, follow up.\r\n"+
		"END:VEVENT\r\nEND:VCALENDAR\r\n",
		i, day.Format("20060102T150405Z"), day.Add(time.Hour).Format("20060102T150405Z"), rrule, i, i%40, i)
}

func contact(i int) string {
	return fmt.Sprintf("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:bench-c-%d@example.org\r\nFN:Person %d\r\nN:Person%d;Some;;;\r\n"+
		"EMAIL;TYPE=INTERNET:p%d@example.org\r\nTEL;TYPE=CELL:+33 6 00 %02d %02d %02d\r\nORG:Example %d\r\nEND:VCARD\r\n",
		i, i, i, i, i%100, (i/100)%100, i%97, i%50)
}

// do sends one request and reads the answer to the end; it returns the
// time to the last byte, the body and the status.
func (s *davServer) do(ctx context.Context, method, path, depth, ctype, body string) (time.Duration, []byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(s.url, "/")+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, 0, err
	}
	req.SetBasicAuth(s.user, s.password)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if depth != "" {
		req.Header.Set("Depth", depth)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return time.Since(start), data, resp.StatusCode, err
}

var client = &http.Client{Timeout: 5 * time.Minute}

const (
	calQuery = `<?xml version="1.0" encoding="utf-8"?>
<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data/></D:prop><C:filter><C:comp-filter name="VCALENDAR"/></C:filter></C:calendar-query>`
	bookQuery = `<?xml version="1.0" encoding="utf-8"?>
<C:addressbook-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/><C:address-data/></D:prop><C:filter test="allof"/></C:addressbook-query>`
	syncQuery = `<?xml version="1.0" encoding="utf-8"?>
<D:sync-collection xmlns:D="DAV:"><D:sync-token>%s</D:sync-token><D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>`
)

var responseRE = regexp.MustCompile(`</([A-Za-z0-9]+:)?response>`)

var tokenRE = regexp.MustCompile(`<(?:[A-Za-z0-9]+:)?sync-token>([^<]*)</`)

// result is one server's figures.
type result struct {
	calReport, bookReport   time.Duration // best of 3
	calCold, bookCold       time.Duration // the first one
	calSync, bookSync       time.Duration
	calBytes, bookBytes     int
	calChanged, bookChanged int // responses in the sync answer
	// The server's resident memory idle with the data (seeded, the
	// collections looked up once, before the benchmark's requests), at
	// the end and its peak (VmHWM), with the RssAnon and RssFile parts.
	idle, idleAnon, idleFile int64
	rss, anon, file, peak    int64
}

// extra is what serving the benchmark's requests added to the idle
// server's resident memory: at the end, and at the peak.
func (r result) extra() (int64, int64) { return r.rss - r.idle, max(0, r.peak-r.idle) }

// run seeds n events and contacts, then measures.
func run(b *testing.B, s *davServer, n int) result {
	ctx := context.Background()
	put := func(coll, ext string, n int, gen func(int) string) {
		if s.seed != nil {
			s.seed(b, coll, ext, n, gen)
			return
		}
		for i := range n {
			ct := "text/calendar; charset=utf-8"
			if ext == ".vcf" {
				ct = "text/vcard; charset=utf-8"
			}
			_, _, code, err := s.do(ctx, http.MethodPut, fmt.Sprintf("%s%d%s", coll, i, ext), "", ct, gen(i))
			if err != nil || code/100 != 2 {
				b.Fatalf("%s: seed %s%d%s: %d %v", s.name, coll, i, ext, code, err)
			}
		}
	}
	var r result
	put(s.cal, ".ics", n, event)
	put(s.book, ".vcf", n, contact)
	// The idle server holding the data: what a client's discovery finds
	// (a Depth: 0 PROPFIND of each collection, as Radicale already
	// answered its MKCOLs), then the resident memory before the
	// benchmark's requests.
	for _, path := range []string{s.cal, s.book} {
		_, data, code, err := s.do(ctx, "PROPFIND", path, "0", "application/xml; charset=utf-8",
			`<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:displayname/></D:prop></D:propfind>`)
		if err != nil || code != http.StatusMultiStatus {
			b.Fatalf("%s: PROPFIND %s: %d %v: %.300s", s.name, path, code, err, data)
		}
	}
	time.Sleep(time.Second) // let the server settle (Go's background GC)
	r.idle, _ = s.rss()
	if s.pid != 0 {
		r.idleAnon, r.idleFile = procRSSParts(s.pid)
	}

	report := func(path, body string) (cold, best time.Duration, size int) {
		for i := range 3 {
			d, data, code, err := s.do(ctx, "REPORT", path, "1", "application/xml; charset=utf-8", body)
			if err != nil || code != http.StatusMultiStatus {
				b.Fatalf("%s: REPORT %s: %d %v: %.300s", s.name, path, code, err, data)
			}
			if got := len(responseRE.FindAll(data, -1)); got != n {
				b.Fatalf("%s: REPORT %s: %d responses, want %d", s.name, path, got, n)
			}
			if i == 0 {
				cold, best, size = d, d, len(data)
			}
			best = min(best, d)
		}
		return cold, best, size
	}
	r.calCold, r.calReport, r.calBytes = report(s.cal, calQuery)
	r.bookCold, r.bookReport, r.bookBytes = report(s.book, bookQuery)

	sync := func(path, ext, ct string, gen func(int) string) (time.Duration, int) {
		_, data, code, err := s.do(ctx, "REPORT", path, "", "application/xml; charset=utf-8", fmt.Sprintf(syncQuery, ""))
		m := tokenRE.FindSubmatch(data)
		if err != nil || code != http.StatusMultiStatus || m == nil {
			b.Fatalf("%s: initial sync-collection %s: %d %v: %.300s", s.name, path, code, err, data)
		}
		for i := range 10 {
			body := strings.Replace(gen(i*(n/10)), "Meeting", "Changed meeting", 1)
			body = strings.Replace(body, "FN:Person", "FN:Changed person", 1)
			_, _, code, err := s.do(ctx, http.MethodPut, fmt.Sprintf("%s%d%s", path, i*(n/10), ext), "", ct, body)
			if err != nil || code/100 != 2 {
				b.Fatalf("%s: change %d: %d %v", s.name, i, code, err)
			}
		}
		d, data, code, err := s.do(ctx, "REPORT", path, "", "application/xml; charset=utf-8", fmt.Sprintf(syncQuery, string(m[1])))
		if err != nil || code != http.StatusMultiStatus {
			b.Fatalf("%s: sync-collection %s: %d %v: %.300s", s.name, path, code, err, data)
		}
		return d, len(responseRE.FindAll(data, -1))
	}
	r.calSync, r.calChanged = sync(s.cal, ".ics", "text/calendar; charset=utf-8", event)
	r.bookSync, r.bookChanged = sync(s.book, ".vcf", "text/vcard; charset=utf-8", contact)
	r.rss, r.peak = s.rss()
	if s.pid != 0 {
		r.anon, r.file = procRSSParts(s.pid)
	}
	return r
}

// procRSS reads VmRSS and VmHWM of a process.
func procRSS(pid int) (int64, int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	var rss, hwm int64
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			if f[0] == "VmRSS:" {
				rss = v << 10
			} else {
				hwm = v << 10
			}
		}
	}
	return rss, hwm
}

// procRSSParts reads RssAnon (heap, stacks) and RssFile (mapped files:
// bbolt's memory map, Python's modules) of a process.
func procRSSParts(pid int) (anon, file int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[0] == "RssAnon:" || f[0] == "RssFile:") {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			if f[0] == "RssAnon:" {
				anon = v << 10
			} else {
				file = v << 10
			}
		}
	}
	return anon, file
}

// startRadicale starts a private Radicale with an empty calendar and
// address book; it seeds by writing the object files into its storage
// (what a PUT leaves there), which takes a second where 10 000 PUTs take
// minutes.
func startRadicale(b *testing.B) *davServer {
	r := testenv.StartRadicale(b, testenv.RadicaleUser{Name: "bench", Password: "bench-pw"})
	r.MakeCollection(b, "bench", "bench-pw", "/bench/cal/", "calendar", "Bench")
	r.MakeCollection(b, "bench", "bench-pw", "/bench/book/", "addressbook", "Bench")
	return &davServer{name: "radicale", url: r.URL, user: "bench", password: "bench-pw", cal: "/bench/cal/", book: "/bench/book/",
		seed: func(b *testing.B, coll, ext string, n int, gen func(int) string) {
			dir := filepath.Join(r.Dir, "collections", "collection-root", filepath.FromSlash(strings.Trim(coll, "/")))
			for i := range n {
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d%s", i, ext)), []byte(gen(i)), 0o600); err != nil {
					b.Fatal(err)
				}
			}
		},
		rss: func() (int64, int64) { return procRSS(r.PID) }, pid: r.PID}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// startMailctl serves server/dav (the bundled server's CalDAV/CardDAV, as
// `mailctl serve` mounts it) in this process over plain HTTP on loopback,
// as Radicale is, with its store in a temporary directory. It seeds through
// the store with bbolt's fsync off (the seed is not measured; the changes
// before the sync-collection are PUTs with fsync). Its memory is this
// process's: the resident memory before the store is opened is the
// baseline, and the client's share (answers read into memory) is small.
func startMailctl(b *testing.B) *davServer {
	const user = "bench@example.org"
	runtime.GC()
	before, _ := procRSS(os.Getpid())
	st, err := dav.Open(context.Background(), filepath.Join(b.TempDir(), dav.FileName))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if err := st.EnsureUser(context.Background(), user); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(dav.New(st, func(ctx context.Context, name, password string, remote net.Addr) (string, error) {
		if name == user && password == "bench-pw" {
			return user, nil
		}
		return "", errors.New("invalid credentials")
	}, dav.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	b.Cleanup(srv.Close)
	col := dav.DefaultCollection
	return &davServer{name: "mailctl-in", url: srv.URL + "/", user: user, password: "bench-pw",
		cal: dav.HomePath(user, dav.Calendars) + col + "/", book: dav.HomePath(user, dav.AddressBooks) + col + "/",
		seed: func(b *testing.B, coll, ext string, n int, gen func(int) string) {
			kind := dav.Calendars
			if ext == ".vcf" {
				kind = dav.AddressBooks
			}
			st.DB().NoSync = true
			defer func() { st.DB().NoSync = false; st.DB().Sync() }()
			for i := range n {
				if _, _, err := st.PutObject(context.Background(), user, kind, col, fmt.Sprintf("%d%s", i, ext), []byte(gen(i)), dav.Conditions{}); err != nil {
					b.Fatal(err)
				}
			}
		},
		rss: func() (int64, int64) {
			rss, hwm := procRSS(os.Getpid())
			return rss - before, hwm - before
		}}
}

// BenchmarkDAV runs the scenario on each server, one after the other in
// the same run, and prints the figures side by side.
func BenchmarkDAV(b *testing.B) {
	n := objects()
	servers := []func(*testing.B) *davServer{startMailctlProcess, startRadicale}
	if os.Getenv("DAVBENCH_INPROCESS") != "" {
		servers[0] = startMailctl
	}
	if os.Getenv("DAVBENCH_SKIP_RADICALE") != "" {
		servers = servers[:1]
	}
	// Lines go to stdout at once: b.Log would print them after the
	// cleanups, and removing Radicale's storage (tens of thousands of
	// files) takes minutes on a busy disk.
	out := func(format string, a ...any) { fmt.Printf("davbench: "+format+"\n", a...) }
	for range b.N {
		for _, start := range servers {
			s := start(b)
			r := run(b, s, n)
			extra, extraPeak := r.extra()
			for _, l := range []string{
				fmt.Sprintf("%-9s calendar-query %d events: %s (first, cache cold: %s; %.1f MB); addressbook-query %d contacts: %s (first, cache cold: %s; %.1f MB)",
					s.name, n, ms(r.calReport), ms(r.calCold), float64(r.calBytes)/1e6, n, ms(r.bookReport), ms(r.bookCold), float64(r.bookBytes)/1e6),
				fmt.Sprintf("%-9s sync-collection after 10 changes: calendar %s (%d responses), address book %s (%d responses)",
					s.name, ms(r.calSync), r.calChanged, ms(r.bookSync), r.bookChanged),
				fmt.Sprintf("%-9s resident memory: idle with the data %s (anonymous %s, files %s), after %s (anonymous %s, files %s), peak %s",
					s.name, mib(r.idle), mib(r.idleAnon), mib(r.idleFile), mib(r.rss), mib(r.anon), mib(r.file), mib(r.peak)),
				fmt.Sprintf("%-9s extra resident memory for the requests: +%s (anonymous %+.1f MiB, files %+.1f MiB), peak +%s",
					s.name, mib(extra), float64(r.anon-r.idleAnon)/(1<<20), float64(r.file-r.idleFile)/(1<<20), mib(extraPeak)),
			} {
				out("%s", l)
			}
			b.ReportMetric(float64(r.calReport)/float64(time.Millisecond), s.name+"-cal-report-ms")
			b.ReportMetric(float64(r.bookReport)/float64(time.Millisecond), s.name+"-book-report-ms")
			b.ReportMetric(float64(extra)/(1<<20), s.name+"-extra-MiB")
		}
	}
}
