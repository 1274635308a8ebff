package spam

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/server/smtp"
)

// Resolver finds the client's host name (forward-confirmed reverse DNS)
// for rspamd's Hostname header; *net.Resolver and *queue.DNS implement it.
type Resolver interface {
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Options configure a Filter.
type Options struct {
	Client *Client
	// Next runs first (server/inbound's checks); nil: none.
	Next smtp.Inbound
	// RejectScore refuses a message scoring at least this much; 0:
	// rspamd's own reject action decides.
	RejectScore float64
	// JunkScore files a message scoring at least this much into Junk; 0:
	// rspamd's "add header" and "rewrite subject" actions decide.
	JunkScore float64
	// Resolver finds the client's host name; nil: none is sent.
	Resolver Resolver
	Logger   *slog.Logger
}

// Filter is an smtp.Inbound that runs Options.Next, then asks rspamd.
type Filter struct {
	opts Options
	log  *slog.Logger

	scanned, rejected, junk, unscanned atomic.Int64

	mu          sync.Mutex
	unreachable time.Time // since when scans fail; zero when they work
	lastErr     string
}

var _ smtp.Inbound = (*Filter)(nil)

// NewFilter returns a Filter.
func NewFilter(opts Options) *Filter {
	if opts.Client == nil {
		opts.Client = &Client{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Filter{opts: opts, log: opts.Logger.With("service", "rspamd")}
}

// CheckClient runs Next's.
func (f *Filter) CheckClient(ctx context.Context, env smtp.Envelope) error {
	if f.opts.Next == nil {
		return nil
	}
	return f.opts.Next.CheckClient(ctx, env)
}

// CheckRecipient runs Next's.
func (f *Filter) CheckRecipient(ctx context.Context, env smtp.Envelope, rcpt string) error {
	if f.opts.Next == nil {
		return nil
	}
	return f.opts.Next.CheckRecipient(ctx, env, rcpt)
}

// Header fields this filter writes; copies already in a message are
// removed so that nobody can claim a verdict.
var ownFields = []string{"X-Spam", "X-Spam-Score", "X-Spamd-Result", "X-Spam-Scanned"}

// CheckMessage runs Next's checks, then rspamd's.
func (f *Filter) CheckMessage(ctx context.Context, env smtp.Envelope, msg io.ReaderAt, size int64) (smtp.Verdict, error) {
	var v smtp.Verdict
	if f.opts.Next != nil {
		var err error
		if v, err = f.opts.Next.CheckMessage(ctx, env, msg, size); err != nil {
			return v, err
		}
	}
	v.Remove = mergeRanges(v.Remove, fieldRanges(io.NewSectionReader(msg, 0, size), ownFields))

	req := Request{From: env.From, Rcpts: env.Rcpts, IP: env.RemoteIP, Helo: env.Helo}
	if f.opts.Resolver != nil && env.RemoteIP != nil {
		req.Hostname = verifiedName(ctx, f.opts.Resolver, env.RemoteIP)
	}
	start := time.Now()
	res, err := f.opts.Client.Check(ctx, req, io.NewSectionReader(msg, 0, size), size)
	if err != nil {
		f.unscanned.Add(1)
		f.mu.Lock()
		if f.unreachable.IsZero() {
			f.unreachable = time.Now()
		}
		f.lastErr = err.Error()
		f.mu.Unlock()
		f.log.Warn("message not scanned, accepted", "ip", ipString(env.RemoteIP), "err", err)
		v.Header += "X-Spam-Scanned: no (rspamd unreachable)\r\n"
		return v, nil
	}
	f.mu.Lock()
	if !f.unreachable.IsZero() {
		f.log.Info("rspamd reachable again", "down_since", f.unreachable)
	}
	f.unreachable, f.lastErr = time.Time{}, ""
	f.mu.Unlock()
	f.scanned.Add(1)

	verdict := f.decide(res)
	f.log.Info("message scanned", "ip", ipString(env.RemoteIP), "action", res.Action, "score", res.Score,
		"verdict", verdict, "ms", time.Since(start).Milliseconds())
	switch verdict {
	case verdictReject:
		f.rejected.Add(1)
		text := "Message refused as spam"
		if m, ok := res.Messages["smtp_message"].(string); ok && printable(m) != "" {
			text += ": " + printable(m)
		}
		return v, &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: text}
	case verdictDefer:
		return v, &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 7, 1}, Message: "Message deferred by the spam filter, try again later"}
	case verdictJunk:
		f.junk.Add(1)
		v.Junk = true
		v.Header += "X-Spam: Yes\r\n"
	}
	v.Header += resultFields(res, verdict == verdictJunk)
	return v, nil
}

type verdict string

const (
	verdictAccept verdict = "accept"
	verdictJunk   verdict = "junk"
	verdictReject verdict = "reject"
	verdictDefer  verdict = "defer"
)

// decide maps rspamd's answer to what the MX does.
func (f *Filter) decide(res *Result) verdict {
	if f.opts.RejectScore > 0 {
		if res.Score >= f.opts.RejectScore {
			return verdictReject
		}
	} else if res.Action == ActionReject {
		return verdictReject
	}
	if res.Action == ActionSoftReject {
		return verdictDefer
	}
	if f.opts.JunkScore > 0 {
		if res.Score >= f.opts.JunkScore {
			return verdictJunk
		}
		return verdictAccept
	}
	switch res.Action {
	case ActionAddHeader, ActionRewriteSubject, ActionReject:
		// ActionReject here: RejectScore is set and higher than the score.
		return verdictJunk
	}
	return verdictAccept
}

// resultFields are X-Spam-Score and X-Spamd-Result (rspamd's format: the
// verdict, the score and the required score, then every symbol with its
// score and options), and the fields rspamd asks to add, one per line.
func resultFields(res *Result, spam bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "X-Spam-Score: %.2f / %.2f\r\n", res.Score, res.RequiredScore)
	word := "False"
	if spam {
		word = "True"
	}
	fmt.Fprintf(&b, "X-Spamd-Result: default: %s [%.2f / %.2f]", word, res.Score, res.RequiredScore)
	names := make([]string, 0, len(res.Symbols))
	for n := range res.Symbols {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := res.Symbols[n]
		fmt.Fprintf(&b, ";\r\n\t%s(%.2f)", printable(n), s.Score)
		if len(s.Options) > 0 {
			opts := make([]string, 0, len(s.Options))
			for _, o := range s.Options {
				if o = printable(o); o != "" {
					opts = append(opts, o)
				}
			}
			o := strings.Join(opts, ",")
			if len(o) > 200 {
				o = o[:200]
			}
			fmt.Fprintf(&b, "[%s]", o)
		}
	}
	b.WriteString("\r\n")
	add := make([]string, 0, len(res.Milter.AddHeaders))
	for n := range res.Milter.AddHeaders {
		add = append(add, n)
	}
	sort.Strings(add)
	for _, n := range add {
		if !fieldNameOK(n) || slices.ContainsFunc(ownFields, func(o string) bool { return strings.EqualFold(o, n) }) {
			continue
		}
		for _, val := range milterValues(res.Milter.AddHeaders[n]) {
			if val = printable(val); val != "" {
				fmt.Fprintf(&b, "%s: %s\r\n", n, val)
			}
		}
	}
	return b.String()
}

// Status is the filter's state for `mailctl status`.
func (f *Filter) Status() *contract.SpamStatus {
	st := &contract.SpamStatus{
		URL:       f.opts.Client.URL,
		Scanned:   f.scanned.Load(),
		Rejected:  f.rejected.Load(),
		Junk:      f.junk.Load(),
		Unscanned: f.unscanned.Load(),
	}
	f.mu.Lock()
	if !f.unreachable.IsZero() {
		t := f.unreachable
		st.UnreachableSince = &t
		st.LastError = f.lastErr
	}
	f.mu.Unlock()
	return st
}

// verifiedName is the first name of ip's PTR records that resolves back
// to ip (forward-confirmed reverse DNS), or "unknown" (rspamd's word).
func verifiedName(ctx context.Context, r Resolver, ip net.IP) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	names, err := r.LookupAddr(ctx, ip.String())
	if err != nil {
		return "unknown"
	}
	for i, n := range names {
		if i == 5 {
			break
		}
		addrs, err := r.LookupIPAddr(ctx, n)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if a.IP.Equal(ip) {
				return strings.TrimSuffix(n, ".")
			}
		}
	}
	return "unknown"
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}

// printable keeps the printable ASCII of s, on one line.
func printable(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, s))
}

func fieldNameOK(n string) bool {
	if n == "" || len(n) > 76 {
		return false
	}
	for _, c := range []byte(n) {
		if c <= 0x20 || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// fieldRanges returns the byte ranges of the header fields of msg whose
// names are in names (with their continuation lines).
func fieldRanges(msg io.Reader, names []string) [][2]int64 {
	br := bufio.NewReader(msg)
	var out [][2]int64
	var off int64
	inField := false
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: skip the rest of it.
			n := int64(len(line))
			for err == bufio.ErrBufferFull {
				line, err = br.ReadSlice('\n')
				n += int64(len(line))
			}
			if inField {
				out[len(out)-1][1] = off + n
			}
			off += n
			if err != nil {
				return out
			}
			continue
		}
		if len(line) == 0 || line[0] == '\r' || line[0] == '\n' {
			return out // end of the header
		}
		n := int64(len(line))
		if line[0] == ' ' || line[0] == '\t' {
			if inField {
				out[len(out)-1][1] = off + n
			}
		} else {
			inField = false
			if i := strings.IndexByte(string(line), ':'); i > 0 {
				name := strings.TrimRight(string(line[:i]), " \t")
				if slices.ContainsFunc(names, func(o string) bool { return strings.EqualFold(o, name) }) {
					out = append(out, [2]int64{off, off + n})
					inField = true
				}
			}
		}
		off += n
		if err != nil {
			return out
		}
	}
}

// mergeRanges returns the union of a and b, ascending and not overlapping.
func mergeRanges(a, b [][2]int64) [][2]int64 {
	if len(b) == 0 {
		return a
	}
	all := append(slices.Clone(a), b...)
	sort.Slice(all, func(i, j int) bool { return all[i][0] < all[j][0] })
	out := all[:1]
	for _, r := range all[1:] {
		last := &out[len(out)-1]
		if r[0] <= last[1] {
			last[1] = max(last[1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}
