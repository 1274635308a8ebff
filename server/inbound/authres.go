package inbound

import "strings"

// formatResults formats an Authentication-Results field (with its name,
// folded, CRLF-terminated). Each result carries an optional comment.
func formatResults(authservID string, results []resultLine) string {
	var b strings.Builder
	b.WriteString("Authentication-Results: ")
	b.WriteString(authservID)
	if len(results) == 0 {
		b.WriteString("; none\r\n")
		return b.String()
	}
	for _, r := range results {
		b.WriteString(";\r\n\t")
		b.WriteString(r.method + "=" + r.value)
		if r.reason != "" {
			b.WriteString(" reason=" + quote(r.reason))
		}
		for _, p := range r.props {
			b.WriteString(" " + p[0] + "=" + quote(p[1]))
		}
		if r.comment != "" {
			b.WriteString(" (" + commentSafe(r.comment) + ")")
		}
	}
	b.WriteString("\r\n")
	return b.String()
}

type resultLine struct {
	method, value, reason string
	props                 [][2]string
	comment               string
}

// quote returns v as a token or, when it holds special characters, a quoted string.
func quote(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\r\n()<>,;:\\\"[]?=") && isPrintable(v) {
		return v
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 32 || c > 126 {
			continue
		}
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String()
}

func isPrintable(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 33 || v[i] > 126 {
			return false
		}
	}
	return true
}

func commentSafe(v string) string {
	var b strings.Builder
	for i := 0; i < len(v) && b.Len() < 200; i++ {
		c := v[i]
		if c < 32 || c > 126 || c == '(' || c == ')' || c == '\\' {
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
