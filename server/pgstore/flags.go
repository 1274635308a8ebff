package pgstore

import (
	"fmt"
	"strings"

	"github.com/mailctl/mailctl/server/store"
)

// The flag rules are server/store's (record.go), whose helpers are not
// exported: the same spelling and limits, so that a message keeps its
// flags when it moves between the two backends.

var systemFlags = []string{store.FlagSeen, store.FlagAnswered, store.FlagFlagged, store.FlagDeleted, store.FlagDraft}

func canonicalFlag(flag string) (string, bool) {
	if flag == "" || len(flag) > store.MaxKeywordLen {
		return "", false
	}
	if strings.HasPrefix(flag, `\`) {
		for _, f := range systemFlags {
			if strings.EqualFold(f, flag) {
				return f, true
			}
		}
		return "", false
	}
	for _, c := range []byte(flag) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return "", false
		}
	}
	return flag, true
}

func normalizeFlags(flags []string) ([]string, error) {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if len(f) > store.MaxKeywordLen {
			return nil, &store.LimitError{Text: fmt.Sprintf("keyword longer than %d bytes", store.MaxKeywordLen)}
		}
		c, ok := canonicalFlag(f)
		if !ok || hasFlag(out, c) {
			continue
		}
		out = append(out, c)
		if len(out) > store.MaxFlags {
			return nil, &store.LimitError{Text: fmt.Sprintf("too many keywords (more than %d)", store.MaxFlags)}
		}
	}
	return out, nil
}

func hasFlag(flags []string, flag string) bool {
	for _, f := range flags {
		if strings.EqualFold(f, flag) {
			return true
		}
	}
	return false
}

// applyFlags and sameFlags state the rules of a STORE that
// setFlagsQuery (flagsql.go) applies in the database; the tests hold
// both to server/store's.
func applyFlags(cur []string, op store.FlagOp, flags []string) []string {
	out := []string{}
	switch op {
	case store.FlagsReplace:
		out = append(out, flags...)
	case store.FlagsAdd:
		out = append(out, cur...)
		for _, f := range flags {
			if !hasFlag(out, f) {
				out = append(out, f)
			}
		}
	case store.FlagsRemove:
		for _, f := range cur {
			if !hasFlag(flags, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

func sameFlags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, f := range a {
		if !hasFlag(b, f) {
			return false
		}
	}
	return true
}

// normalizeMailbox is server/store's rule: INBOX in any case is INBOX,
// no empty level, no control character, '*' or '%'.
func normalizeMailbox(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty name", store.ErrInvalidMailbox)
	}
	if len(name) > store.MaxMailboxName {
		return "", fmt.Errorf("%w: longer than %d bytes", store.ErrInvalidMailbox, store.MaxMailboxName)
	}
	if strings.EqualFold(name, store.Inbox) {
		return store.Inbox, nil
	}
	if len(name) > len(store.Inbox) && strings.EqualFold(name[:len(store.Inbox)+1], store.Inbox+string(store.Delim)) {
		name = store.Inbox + name[len(store.Inbox):]
	}
	if name[0] == store.Delim || name[len(name)-1] == store.Delim || strings.Contains(name, string([]rune{store.Delim, store.Delim})) {
		return "", fmt.Errorf("%w: %q", store.ErrInvalidMailbox, name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '*' || r == '%' || r == 0xfffd {
			return "", fmt.Errorf("%w: %q", store.ErrInvalidMailbox, name)
		}
	}
	return name, nil
}
