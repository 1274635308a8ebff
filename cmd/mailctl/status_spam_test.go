package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/contract"
)

// TestStatusSpam: a working filter is one line; an unreachable rspamd
// needs attention, with since when and how many messages went unscanned.
func TestStatusSpam(t *testing.T) {
	st := healthyStatus()
	st.Spam = &contract.SpamStatus{URL: "http://127.0.0.1:11333", Scanned: 120, Rejected: 7, Junk: 11, Learned: 3}
	r := buildServerReport("mx1", observation(t, st), nil, statusNow)
	if len(r.Attention) != 0 {
		t.Errorf("working filter: attention %q", r.Attention)
	}
	var text bytes.Buffer
	printStatusReport(&text, statusReport{Servers: []serverReport{r}})
	if want := "  spam         rspamd at http://127.0.0.1:11333: 120 scanned, 7 refused, 11 to Junk, 0 unscanned; learned 3\n"; !strings.Contains(text.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, text.String())
	}

	since := statusNow.Add(-90 * time.Minute)
	st.Spam.UnreachableSince, st.Spam.Unscanned = &since, 4
	st.Spam.LastError = "rspamd check: Post \"http://127.0.0.1:11333/checkv2\": dial tcp 127.0.0.1:11333:\n connect: connection refused"
	r = buildServerReport("mx1", observation(t, st), nil, statusNow)
	want := `rspamd unreachable since 2026-12-07T06:30:00Z: 4 messages accepted unscanned (rspamd check: Post "http://127.0.0.1:11333/checkv2": dial tcp 127.0.0.1:11333: connect: connection refused)`
	if len(r.Attention) != 1 || r.Attention[0] != want {
		t.Errorf("attention %q, want %q", r.Attention, want)
	}
	if r.Spam == nil || r.Spam.Unscanned != 4 {
		t.Errorf("JSON report spam = %+v", r.Spam)
	}
}
