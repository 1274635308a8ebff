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
		user := strings.ToLower(q.Get("user"))
		mbs, err := st.Mailboxes(r.Context(), user)
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, store.ErrNoSuchUser) {
				code = http.StatusNotFound
			}
			http.Error(w, err.Error(), code)
			return
		}
		if m := q.Get("mailbox"); m != "" {
			var keep []store.Mailbox
			for _, mb := range mbs {
				if mb.Name == m {
					keep = append(keep, mb)
				}
			}
			if keep == nil {
				http.Error(w, fmt.Sprintf("user %s has no mailbox %q", user, m), http.StatusNotFound)
				return
			}
			mbs = keep
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		sw := mailfmt.NewStreamWriter(w)
		if q.Get("mailboxes") != "" {
			// The mailboxes only, without their messages.
			for _, mb := range mbs {
				if err := sw.Mailbox(mailfmt.Record{Mailbox: mb.Name, SpecialUse: mb.SpecialUse, Subscribed: mb.Subscribed,
					UIDValidity: mb.UIDValidity, UIDNext: mb.UIDNext}); err != nil {
					return
				}
			}
			sw.End()
			return
		}
		if err := exportMailboxes(r.Context(), st, user, mbs, q.Get("digests") != "", sw); err != nil {
			log.Warn("export stopped", "user", user, "err", err)
			sw.Fail(err)
			return
		}
		sw.End()
		log.Info("exported", "user", user, "mailboxes", len(mbs))
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
	client := transferClient(path)
	defer client.CloseIdleConnections()
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
	req, err := http.NewRequestWithContext(ctx, "GET", "http://mailctl/export?"+v.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("query control socket %q (is the server running?): %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("export of %s: %s", o.User, strings.TrimSpace(string(b)))
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("export of %s: %w", o.User, err)
	}
	return nil
}

// Import sends the transfer stream r to the server behind the control
// socket at path, to be appended to user's mailboxes, and calls ack for
// each message appended. The error says why it stopped, if it did.
func Import(ctx context.Context, path, user string, r io.Reader, ack func(ImportAck) error) error {
	client := transferClient(path)
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "POST", "http://mailctl/import?"+url.Values{"user": {user}}.Encode(), r)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("query control socket %q (is the server running?): %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("import for %s: %s", user, strings.TrimSpace(string(b)))
	}
	dec := json.NewDecoder(resp.Body)
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
