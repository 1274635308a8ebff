package store_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

// A delivery as SMTP makes it, and what IMAP then reads.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "store")
	defer os.RemoveAll(dir)

	st, err := store.Open(ctx, dir, nil)
	if err != nil {
		panic(err)
	}
	defer st.Close()
	if err := st.EnsureUser(ctx, "alice@example.test", 10<<20); err != nil {
		panic(err)
	}
	body := "From: bob@example.test\r\nSubject: hello\r\n\r\nHi Alice\r\n"
	// Returns once the message is durable: then SMTP may answer 250.
	uid, err := st.Deliver(ctx, "alice@example.test", "", strings.NewReader(body), nil, time.Now())
	if err != nil {
		panic(err)
	}
	mb, msgs, _ := st.Messages(ctx, "alice@example.test", "INBOX")
	used, n, _ := st.Usage(ctx, "alice@example.test")
	fmt.Println(uid, mb.Messages, mb.UIDNext, msgs[0].Size, used, n)
	// Output: 1 1 2 52 52 1
}
