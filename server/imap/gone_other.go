//go:build !linux

package imap

// goneProbe: not implemented beyond Linux; commands run to their end.
func (c *conn) goneProbe() func() bool { return nil }
