package imap_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailctl/mailctl/server/internal/limits"
)

// TestAppendCutShort: a client that hangs up in the middle of an APPEND
// literal leaves nothing in the mailbox; the same APPEND sent whole is
// stored with its announced size.
func TestAppendCutShort(t *testing.T) {
	env := newEnv(t, 0)
	body := "Subject: cut\r\n\r\n" + strings.Repeat("x", 980) + "\r\n"
	appendRaw := func(send string, whole bool) {
		t.Helper()
		c, err := tls.Dial("tcp", env.tlsAddr, env.clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 4096)
		readUntil := func(tag string) string {
			var all string
			for !strings.Contains(all, tag) {
				n, err := c.Read(buf)
				if err != nil {
					t.Fatalf("read %q: %v (got %q)", tag, err, all)
				}
				all += string(buf[:n])
			}
			return all
		}
		readUntil("* OK")
		fmt.Fprintf(c, "a LOGIN %s %s\r\n", alice, alicePW)
		readUntil("a OK")
		fmt.Fprintf(c, "b APPEND INBOX {%d+}\r\n", len(body))
		io.WriteString(c, send)
		if whole {
			io.WriteString(c, "\r\n")
			if got := readUntil("b "); !strings.Contains(got, "b OK") {
				t.Fatalf("whole APPEND = %q", got)
			}
		}
	}
	appendRaw(body[:19], false)
	// Absence cannot be waited for: give the server a second to see the
	// hang-up (it stored the cut message within 200 ms before the fix).
	time.Sleep(time.Second)
	_, msgs, err := env.st.Messages(context.Background(), alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		t.Errorf("a truncated APPEND was stored: %d octets", m.Size)
	}
	appendRaw(body, true)
	_, msgs, err = env.st.Messages(context.Background(), alice, "INBOX")
	if err != nil || len(msgs) != 1 || msgs[0].Size != int64(len(body)) {
		t.Fatalf("after a whole APPEND: %d messages %v, %v; want one of %d octets", len(msgs), msgs, err, len(body))
	}
}

// TestAppendHeaderLimit: APPEND refuses a message whose header is over the
// limit SMTP applies at DATA with NO [LIMIT] and stores nothing; one at
// the limit is stored.
func TestAppendHeaderLimit(t *testing.T) {
	env := newEnv(t, 0)
	c := env.dialTLS(t, nil)
	if err := c.Login(alice, alicePW).Wait(); err != nil {
		t.Fatal(err)
	}
	appendMsg := func(body string) error {
		cmd := c.Append("INBOX", int64(len(body)), nil)
		if _, err := cmd.Write([]byte(body)); err != nil {
			return err
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		_, err := cmd.Wait()
		return err
	}
	for _, tc := range []struct {
		name, body string
	}{
		{"too many lines", strings.Repeat("X-A: b\r\n", limits.MaxHeaderLines+1) + "\r\nbody\r\n"},
		{"too many bytes", strings.Repeat("X-A: "+strings.Repeat("b", 993)+"\r\n", limits.MaxHeaderBytes/1000+1) + "\r\nbody\r\n"},
	} {
		var ie *goimap.Error
		if err := appendMsg(tc.body); !errors.As(err, &ie) || ie.Type != goimap.StatusResponseTypeNo || ie.Code != goimap.ResponseCodeLimit {
			t.Errorf("APPEND, %s = %v, want NO [LIMIT]", tc.name, err)
		}
	}
	_, msgs, err := env.st.Messages(context.Background(), alice, "INBOX")
	if err != nil || len(msgs) != 0 {
		t.Fatalf("after refused APPENDs: %d messages, %v; want none", len(msgs), err)
	}
	if err := appendMsg(strings.Repeat("X-A: b\r\n", limits.MaxHeaderLines) + "\r\nbody\r\n"); err != nil {
		t.Fatalf("APPEND at the limit = %v", err)
	}
	// The connection goes on.
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
}
