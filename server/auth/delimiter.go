package auth

import (
	"fmt"
	"strings"
)

// DefaultRecipientDelimiter separates a local part from its detail
// (alice+lists@) unless configured otherwise.
const DefaultRecipientDelimiter = "+"

// delimiterChars are the characters a recipient delimiter may use: those
// of a dot-atom local part (ParseAddress) other than letters, digits and
// the dot.
const delimiterChars = "-_+=&'*/?^`{|}~#$"

// CheckRecipientDelimiter checks a recipient delimiter setting: "" turns
// subaddresses off; otherwise one or more distinct characters of
// "-_+=&'*/?^`{|}~#$", each a delimiter (Postfix's recipient_delimiter:
// "+-" makes alice+x@ and alice-x@ both alice@).
func CheckRecipientDelimiter(s string) error {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(delimiterChars, s[i]) < 0 {
			return fmt.Errorf("recipient delimiter %q: %q is not one of %s", s, s[i], delimiterChars)
		}
		if strings.IndexByte(s[:i], s[i]) >= 0 {
			return fmt.Errorf("recipient delimiter %q: %q is repeated", s, s[i])
		}
	}
	return nil
}

// SetRecipientDelimiter sets the characters that separate a local part
// from its detail in Resolve (CheckRecipientDelimiter); "" turns
// subaddresses off. The default is DefaultRecipientDelimiter.
func (d *Directory) SetRecipientDelimiter(delims string) error {
	if err := CheckRecipientDelimiter(delims); err != nil {
		return err
	}
	d.mu.Lock()
	d.delims = &delims
	d.mu.Unlock()
	return nil
}

// RecipientDelimiter returns the delimiter characters in effect.
func (d *Directory) RecipientDelimiter() string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.delims == nil {
		return DefaultRecipientDelimiter
	}
	return *d.delims
}
