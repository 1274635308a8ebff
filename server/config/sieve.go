package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"

	"github.com/mailctl/mailctl/server/sieve"
)

// checkSieve compiles a user's script; each error is one problem, at the
// script's line:col.
func checkSieve(p *problems, field, script string) {
	if script == "" {
		return
	}
	_, err := sieve.Compile("sieve", script)
	var list sieve.ErrorList
	if !errors.As(err, &list) {
		return
	}
	for _, e := range list {
		p.add(field, "%d:%d: %s", e.Pos.Line, e.Pos.Col, e.Msg)
	}
}

// SieveDigest is a short digest of a user's script, as the server reports
// it and plan compares it; "" when there is none.
func SieveDigest(script string) string {
	if script == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(script))
	return hex.EncodeToString(sum[:8])
}
