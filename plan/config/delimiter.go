package config

import (
	"github.com/hashicorp/hcl/v2"

	"github.com/mailctl/mailctl/server/auth"
)

// recipientDelimiter decodes a server's recipient_delimiter attribute.
func (d *decoder) recipientDelimiter(s *Server, a *hcl.Attribute) {
	if a == nil {
		return
	}
	v, ok := d.str(a)
	if !ok {
		return
	}
	if err := auth.CheckRecipientDelimiter(v.Str); err != nil {
		d.errf(a.Expr.Range().Ptr(), "Invalid recipient delimiter",
			"%q must be \"\" (no subaddresses) or one or more distinct characters of -_+=&'*/?^`{|}~#$ (like Postfix's recipient_delimiter, \"+-\").", v.Str)
		return
	}
	s.RecipientDelimiter = &v.Str
}
