package imap

import (
	"bytes"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailctl/mailctl/server/store"
)

// FuzzStoredMessage parses arbitrary stored message bodies the way FETCH
// and SEARCH do (header, ENVELOPE, BODYSTRUCTURE, text search): nothing
// may panic, whatever SMTP or APPEND stored.
func FuzzStoredMessage(f *testing.F) {
	f.Add([]byte("From: a@example.test\r\nSubject: hi\r\n\r\nbody\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x--\r\n"))
	f.Add([]byte("Subject: =?utf-8?q?caf=C3=A9?=\r\nDate: Mon, 23 Nov 2026 16:00:00 +0000\r\n\r\n"))
	f.Add([]byte("no header at all"))
	f.Fuzz(func(t *testing.T, body []byte) {
		envelope(bytes.NewReader(body))
		imapserver.ExtractBodyStructure(bytes.NewReader(body))
		l := &lazyMessage{m: store.Message{UID: 1, Size: int64(len(body)), InternalDate: time.Now()}, body: body, loaded: true}
		matchCriteria(l, 1, &goimap.SearchCriteria{
			Header:    []goimap.SearchCriteriaHeaderField{{Key: "Subject", Value: "hi"}},
			Text:      []string{"hello"},
			Body:      []string{"body"},
			SentSince: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		})
	})
}
