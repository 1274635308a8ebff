package daemon

import (
	"log/slog"
	"time"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/smtp"
	"github.com/mailctl/mailctl/server/spam"
)

// spamFilter is the rspamd filter of port 25 and its learner, when the
// configuration turns them on (config.Spam). Its methods work on nil:
// no filter.
type spamFilter struct {
	filter  *spam.Filter
	learner *spam.Learner
}

func newSpamFilter(cfg *config.Config, next smtp.Inbound, st spam.Store, res spam.Resolver, log *slog.Logger) *spamFilter {
	sc := cfg.SpamFilter()
	if sc == nil {
		return nil
	}
	client := &spam.Client{URL: sc.URL, ControllerURL: sc.ControllerURL, Timeout: time.Duration(sc.Timeout)}
	log.Info("content filtering with rspamd", "url", sc.URL, "controller", sc.ControllerURL,
		"reject_score", sc.RejectScore, "junk_score", sc.JunkScore)
	return &spamFilter{
		filter: spam.NewFilter(spam.Options{Client: client, Next: next, RejectScore: sc.RejectScore,
			JunkScore: sc.JunkScore, Resolver: res, Logger: log}),
		learner: spam.NewLearner(client, st, log),
	}
}

// inbound is what the MX checks with: next alone without a filter.
func (f *spamFilter) inbound(next smtp.Inbound) smtp.Inbound {
	if f == nil {
		return next
	}
	return f.filter
}

// transferred is imap.Options.Transferred.
func (f *spamFilter) transferred() func(user, src, dst string, uids []uint32) {
	if f == nil {
		return nil
	}
	return f.learner.Transferred
}

func (f *spamFilter) status() *contract.SpamStatus {
	if f == nil {
		return nil
	}
	st := f.filter.Status()
	st.Learned, st.LearnFailures = f.learner.Counts()
	return st
}

func (f *spamFilter) close() {
	if f != nil {
		f.learner.Close()
	}
}
