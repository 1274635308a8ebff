package sieve

import (
	"context"
	"testing"
	"time"
)

// FuzzSieve compiles any script and runs what compiles on any message: it
// must never panic, and the step limit must end every run quickly.
func FuzzSieve(f *testing.F) {
	f.Add(`require ["fileinto","variables"]; if header :matches "subject" "*a*" { fileinto "x${1}"; }`,
		"Subject: banana\r\n\r\nbody\r\n")
	f.Add(`require ["body","relational","comparator-i;ascii-numeric"]; if body :text :value "gt" :comparator "i;ascii-numeric" "5" { discard; }`,
		"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\n9\r\n--x--\r\n")
	f.Add(`require ["date","imap4flags","vacation","envelope","subaddress"]; if date :zone "+0100" "date" "year" "2020" { addflag "a"; vacation :days 3 "x"; } if envelope :detail "to" "*" { keep; }`,
		"Date: Wed, 1 Jan 2020 00:00:00 +0000\r\n\r\n")
	f.Add("reject text:\n..x\n.\n;", "")
	f.Fuzz(func(t *testing.T, src, raw string) {
		s, err := CompileLimits("fuzz", src, Limits{MaxSteps: 200000})
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		m := ParseMessage([]byte(raw))
		res, err := s.Run(ctx, m, Envelope{From: "a+b@example.com", To: "c+d@example.com"}, RunOptions{})
		if err == nil {
			for _, a := range res.Actions {
				if v, ok := a.(Vacation); ok {
					AutoReplyAllowed(m, "a+b@example.com", []string{"c+d@example.com"}, v)
					v.Compose(m, "c+d@example.com", "a+b@example.com", "<x@example.com>", time.Unix(0, 0))
				}
			}
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("run took %v", d)
		}
	})
}
