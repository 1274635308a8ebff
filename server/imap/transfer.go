package imap

import "github.com/mailctl/mailctl/server/store"

// transferred tells Options.Transferred about a COPY or MOVE from the
// selected mailbox to dest.
func (s *session) transferred(dest string, res store.CopyResult) {
	if fn := s.srv.opts.Transferred; fn != nil && len(res.DestUIDs) > 0 {
		fn(s.user, s.view.sm.name(), dest, res.DestUIDs)
	}
}
