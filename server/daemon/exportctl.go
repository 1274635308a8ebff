package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mailctl/mailctl/internal/mailfmt"
	"github.com/mailctl/mailctl/server/store"
)

// The control socket's export and import endpoints (mailctl export and
// mailctl import, through `mailctl serve export|import` on the server):
//
//	GET /export?user=U[&mailbox=M][&digests=1|&mailboxes=1]
//	    a transfer stream (internal/mailfmt) of U's mailboxes (or of M),
//	    each mailbox record followed by its messages in UID order; with
//	    digests, the SHA-256 of each message instead of its bytes; with
//	    mailboxes, no messages.
//	POST /import?user=U
//	    the request is a transfer stream; each message is appended to its
//	    record's mailbox (created when missing, with the special use and
//	    subscription of its mailbox record) with its flags and internal
//	    date, in stream order, so UIDs ascend in the order of the source.
//	    The answer is one JSON line per message once it is durable
//	    (ImportAck), then {"done":N} or {"error":"..."}.

// MailStore is what the export and import endpoints use of the store.
type MailStore interface {
	Mailboxes(ctx context.Context, user string) ([]store.Mailbox, error)
	Messages(ctx context.Context, user, mailbox string) (store.Mailbox, []store.Message, error)
	OpenBody(ctx context.Context, m store.Message) (store.Body, error)
	CreateMailbox(ctx context.Context, user, name, specialUse string) error
	SetSubscribed(ctx context.Context, user, name string, subscribed bool) error
	Append(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uidValidity, uid uint32, err error)
}

// ImportAck is one line of the import endpoint's answer.
type ImportAck struct {
	Key         string `json:"key,omitempty"`
	Mailbox     string `json:"mailbox,omitempty"`
	UID         uint32 `json:"uid,omitempty"`
	UIDValidity uint32 `json:"uidvalidity,omitempty"`
	Done        *int   `json:"done,omitempty"`
	Error       string `json:"error,omitempty"`
}

func handleMailTransfer(mux *http.ServeMux, st MailStore, log *slog.Logger) {
	mux.HandleFunc("GET /export", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		o := ExportOptions{User: strings.ToLower(q.Get("user")), Mailbox: q.Get("mailbox"),
			Digests: q.Get("digests") != "", MailboxesOnly: q.Get("mailboxes") != ""}
		mbs, err := selectMailboxes(r.Context(), st, o)
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, store.ErrNoSuchUser) || errors.Is(err, store.ErrNoSuchMailbox) {
				code = http.StatusNotFound
			}
			http.Error(w, err.Error(), code)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if err := writeExport(r.Context(), st, o, mbs, mailfmt.NewStreamWriter(w)); err != nil {
			log.Warn("export stopped", "user", o.User, "err", err)
			return
		}
		log.Info("exported", "user", o.User, "mailboxes", len(mbs))
	})
	mux.HandleFunc("POST /import", func(w http.ResponseWriter, r *http.Request) {
		user := strings.ToLower(r.URL.Query().Get("user"))
		if _, err := st.Mailboxes(r.Context(), user); err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, store.ErrNoSuchUser) {
				code = http.StatusNotFound
			}
			http.Error(w, err.Error(), code)
			return
		}
		// The answer is written once the request is read: an HTTP/1
		// server may not answer while its request is still coming.
		var answer bytes.Buffer
		enc := json.NewEncoder(&answer)
		n, err := importStream(r.Context(), st, user, mailfmt.NewStreamReader(r.Body), func(a ImportAck) error {
			return enc.Encode(a)
		})
		if err != nil {
			log.Warn("import stopped", "user", user, "appended", n, "err", err)
			enc.Encode(ImportAck{Error: err.Error()})
		} else {
			enc.Encode(ImportAck{Done: &n})
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Write(answer.Bytes())
	})
}

// selectMailboxes returns the mailboxes of o.User that o selects (all,
// or o.Mailbox); the error wraps store.ErrNoSuchUser or
// store.ErrNoSuchMailbox when they are missing.
func selectMailboxes(ctx context.Context, st MailStore, o ExportOptions) ([]store.Mailbox, error) {
	mbs, err := st.Mailboxes(ctx, o.User)
	if err != nil || o.Mailbox == "" {
		return mbs, err
	}
	var keep []store.Mailbox
	for _, mb := range mbs {
		if mb.Name == o.Mailbox {
			keep = append(keep, mb)
		}
	}
	if keep == nil {
		return nil, noMailboxError{o.User, o.Mailbox}
	}
	return keep, nil
}

// noMailboxError says which mailbox an export asked for is missing.
type noMailboxError struct{ user, mailbox string }

func (e noMailboxError) Error() string {
	return fmt.Sprintf("user %s has no mailbox %q", e.user, e.mailbox)
}
func (e noMailboxError) Unwrap() error { return store.ErrNoSuchMailbox }

// writeExport writes the transfer stream of mbs as o asks and ends it:
// with its end record, or with a failure record saying why it stopped.
func writeExport(ctx context.Context, st MailStore, o ExportOptions, mbs []store.Mailbox, sw *mailfmt.StreamWriter) error {
	if o.MailboxesOnly {
		// The mailboxes only, without their messages.
		for _, mb := range mbs {
			if err := sw.Mailbox(mailfmt.Record{Mailbox: mb.Name, SpecialUse: mb.SpecialUse, Subscribed: mb.Subscribed,
				UIDValidity: mb.UIDValidity, UIDNext: mb.UIDNext}); err != nil {
				return err
			}
		}
		return sw.End()
	}
	if err := exportMailboxes(ctx, st, o.User, mbs, o.Digests, sw); err != nil {
		sw.Fail(err)
		return err
	}
	return sw.End()
}

// ExportStore writes the transfer stream of o.User's mail in st to w:
// what the control socket's export endpoint sends, for a store opened
// here (mailctl export -from-backup opens the store of a backup).
func ExportStore(ctx context.Context, st MailStore, o ExportOptions, w io.Writer) error {
	mbs, err := selectMailboxes(ctx, st, o)
	if err != nil {
		return err
	}
	return writeExport(ctx, st, o, mbs, mailfmt.NewStreamWriter(w))
}

// exportMailboxes writes the mailboxes and their messages. A message
// expunged while the export runs is left out.
func exportMailboxes(ctx context.Context, st MailStore, user string, mbs []store.Mailbox, digests bool, sw *mailfmt.StreamWriter) error {
	for _, mb := range mbs {
		mbox, msgs, err := st.Messages(ctx, user, mb.Name)
		if errors.Is(err, store.ErrNoSuchMailbox) {
			continue
		}
		if err != nil {
			return err
		}
		if err := sw.Mailbox(mailfmt.Record{Mailbox: mbox.Name, SpecialUse: mbox.SpecialUse, Subscribed: mbox.Subscribed,
			UIDValidity: mbox.UIDValidity, UIDNext: mbox.UIDNext}); err != nil {
			return err
		}
		for _, m := range msgs {
			body, err := st.OpenBody(ctx, m)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("message %d of %q: %w", m.UID, mbox.Name, err)
			}
			rec := mailfmt.Record{Mailbox: mbox.Name, UID: m.UID, Flags: m.Flags, Date: m.InternalDate.UTC(), Size: m.Size}
			if digests {
				h := sha256.New()
				_, err = io.Copy(h, body)
				rec.Size, rec.Digest = 0, hex.EncodeToString(h.Sum(nil))
				if err == nil {
					err = sw.Message(rec, nil)
				}
			} else {
				err = sw.Message(rec, body)
			}
			body.Close()
			if err != nil {
				return fmt.Errorf("message %d of %q: %w", m.UID, mbox.Name, err)
			}
		}
		if err := sw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// importStream appends the messages of the stream r, calling ack after
// each is durable; it returns how many were appended.
func importStream(ctx context.Context, st MailStore, user string, r *mailfmt.StreamReader, ack func(ImportAck) error) (int, error) {
	known := map[string]bool{}
	mbs, err := st.Mailboxes(ctx, user)
	if err != nil {
		return 0, err
	}
	for _, mb := range mbs {
		known[mb.Name] = true
	}
	ensure := func(rec mailfmt.Record) error {
		if known[rec.Mailbox] || strings.EqualFold(rec.Mailbox, store.Inbox) {
			return nil
		}
		err := st.CreateMailbox(ctx, user, rec.Mailbox, rec.SpecialUse)
		if err != nil && rec.SpecialUse != "" && !errors.Is(err, store.ErrMailboxExists) {
			// The special use may be another mailbox's already.
			err = st.CreateMailbox(ctx, user, rec.Mailbox, "")
		}
		if err != nil && !errors.Is(err, store.ErrMailboxExists) {
			return err
		}
		if rec.Kind == mailfmt.KindMailbox && !rec.Subscribed {
			if err := st.SetSubscribed(ctx, user, rec.Mailbox, false); err != nil {
				return err
			}
		}
		known[rec.Mailbox] = true
		return nil
	}
	n := 0
	for {
		rec, body, err := r.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read the import: %w", err)
		}
		if rec.Mailbox == "" {
			return n, fmt.Errorf("a %s record without a mailbox", rec.Kind)
		}
		if err := ensure(rec); err != nil {
			return n, err
		}
		if rec.Kind != mailfmt.KindMessage {
			continue
		}
		uidv, uid, err := st.Append(ctx, user, rec.Mailbox, body, rec.Flags, rec.Date)
		if err != nil {
			if errors.Is(err, store.ErrQuotaExceeded) {
				return n, fmt.Errorf("%s is over quota", user)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return n, fmt.Errorf("read the import: %w", mailfmt.ErrTruncated)
			}
			return n, err
		}
		n++
		if err := ack(ImportAck{Key: rec.Key, Mailbox: rec.Mailbox, UID: uid, UIDValidity: uidv}); err != nil {
			return n, err
		}
	}
}

// transferClient is an HTTP client of the control socket at path, without
// the time limit of controlClient: a transfer takes as long as it takes.
func transferClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// ExportOptions select what Export streams.
type ExportOptions struct {
	User    string
	Mailbox string // "" for every mailbox
	Digests bool
	// MailboxesOnly sends the mailbox records without messages.
	MailboxesOnly bool
}

// Export copies the transfer stream of o.User's mail from the server
// behind the control socket at path to w.
func Export(ctx context.Context, path string, o ExportOptions, w io.Writer) error {
	v := url.Values{"user": {o.User}}
	if o.Mailbox != "" {
		v.Set("mailbox", o.Mailbox)
	}
	if o.Digests {
		v.Set("digests", "1")
	}
	if o.MailboxesOnly {
		v.Set("mailboxes", "1")
	}
	what := "export of " + o.User
	body, err := transfer(ctx, path, "GET", "/export", v, nil, what)
	if err != nil {
		return err
	}
	defer body.Close()
	if _, err := io.Copy(w, body); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// transfer makes one request of the transfer endpoints of the control
// socket at path and returns the body of its 200 answer (to be closed),
// or an error naming what (the server's own text when it refused).
func transfer(ctx context.Context, path, method, endpoint string, q url.Values, r io.Reader, what string) (io.ReadCloser, error) {
	client := transferClient(path)
	req, err := http.NewRequestWithContext(ctx, method, "http://mailctl"+endpoint+"?"+q.Encode(), r)
	if err != nil {
		client.CloseIdleConnections()
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		client.CloseIdleConnections()
		return nil, fmt.Errorf("query control socket %q (is the server running?): %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		client.CloseIdleConnections()
		return nil, fmt.Errorf("%s: %s", what, strings.TrimSpace(string(b)))
	}
	return closeBoth{resp.Body, client}, nil
}

// closeBoth closes a transfer's answer and then its client's connection.
type closeBoth struct {
	io.ReadCloser
	client *http.Client
}

func (c closeBoth) Close() error {
	err := c.ReadCloser.Close()
	c.client.CloseIdleConnections()
	return err
}

// Import sends the transfer stream r to the server behind the control
// socket at path, to be appended to user's mailboxes, and calls ack for
// each message appended. The error says why it stopped, if it did.
func Import(ctx context.Context, path, user string, r io.Reader, ack func(ImportAck) error) error {
	body, err := transfer(ctx, path, "POST", "/import", url.Values{"user": {user}}, r, "import for "+user)
	if err != nil {
		return err
	}
	defer body.Close()
	dec := json.NewDecoder(body)
	for {
		var a ImportAck
		if err := dec.Decode(&a); err != nil {
			return fmt.Errorf("import for %s: the server's answer ended early: %w", user, err)
		}
		switch {
		case a.Error != "":
			return errors.New(a.Error)
		case a.Done != nil:
			return nil
		}
		if err := ack(a); err != nil {
			return err
		}
	}
}
