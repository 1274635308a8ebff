package store

import "context"

// TextSearcher is implemented by a Backend that keeps, beside each body,
// the text that SEARCH BODY and TEXT match, and matches it where it is
// kept (pgstore: in the database), so that such a search does not send
// every body of a mailbox to the node that runs it. The embedded store,
// whose bodies are local, does not implement it.
//
// The texts are made by the IMAP server (SetSearchText), which alone
// knows the rules (MIME parts, transfer and charset decoding, case
// folding); the backend only tells whether a needle, made by the same
// rules, is a substring of them.
type TextSearcher interface {
	// SetSearchText sets the function that makes, when a body is written
	// (delivery, APPEND, import), the texts kept beside it: head (what
	// TEXT matches beyond body) and body (what BODY matches); nil: none
	// is made. Bodies written without one have no kept text.
	SetSearchText(fn func(msg []byte) (head, body string))
	// SearchText tells, for the messages of a mailbox (by ID) whose UIDs
	// are given, which needles their kept texts contain: results[i] for
	// uids[i]. A message whose body has no kept text (written before the
	// backend kept them, too large, or with no SetSearchText) is not
	// Known: the caller reads its body. A UID of no message (gone) is
	// Known with nothing found, as a body that cannot be opened matches
	// nothing. At most MaxTextNeedles needles.
	SearchText(ctx context.Context, user string, mailboxID uint64, uids []uint32, needles []TextNeedle) (results []TextResult, err error)
	// KeepText keeps texts[i], made by the function given to
	// SetSearchText from the whole body of msgs[i], for a message that
	// SearchText said had none (a body written before the backend kept
	// texts): the next searches need not read it. A message gone, or
	// whose body has a kept text already, is left as it is.
	KeepText(ctx context.Context, msgs []Message, texts []KeptText) error
}

// KeptText is the text kept of one body (see SetSearchText).
type KeptText struct {
	Head, Body string
}

// MaxTextNeedles is how many needles one SearchText call takes.
const MaxTextNeedles = 64

// TextNeedle is a string searched for in the kept texts of messages, as
// is: it was made by the rules of the function given to SetSearchText
// (lowered), and is not empty.
type TextNeedle struct {
	Text string
	// Header: in head too (TEXT), not only in body (BODY).
	Header bool
}

// TextResult is what SearchText tells of one message.
type TextResult struct {
	// Known: the message has a kept text (or is gone); Found is then
	// complete.
	Known bool
	// Found has bit k set when needles[k] is in the kept text.
	Found uint64
}
