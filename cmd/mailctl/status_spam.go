package main

import (
	"fmt"
	"time"

	"github.com/mailctl/mailctl/contract"
)

// spamAttention is the attention line of an rspamd filter that cannot
// reach rspamd, or "".
func spamAttention(s *contract.SpamStatus) string {
	if s == nil || s.UnreachableSince == nil {
		return ""
	}
	return fmt.Sprintf("rspamd unreachable since %s: %s accepted unscanned (%s)",
		s.UnreachableSince.UTC().Format(time.RFC3339), plural(int(s.Unscanned), "message"), oneLine(s.LastError))
}

// spamLine sums up the filter's counters.
func spamLine(s *contract.SpamStatus) string {
	line := fmt.Sprintf("rspamd at %s: %d scanned, %d refused, %d to Junk, %d unscanned; learned %d",
		s.URL, s.Scanned, s.Rejected, s.Junk, s.Unscanned, s.Learned)
	if s.LearnFailures > 0 {
		line += fmt.Sprintf(" (%d failed)", s.LearnFailures)
	}
	return line
}
