// Package spam asks rspamd (https://rspamd.com/doc/developers/protocol.html)
// about the mail received on port 25 and teaches it from what users move
// into and out of their Junk mailbox.
//
// Filter wraps the MX's other checks (server/inbound): after them it posts
// the message to rspamd's normal worker (/checkv2, with the envelope in the
// From, Rcpt, IP, Helo and Hostname request headers) and maps rspamd's
// answer: "reject" (or a score at or above Options.RejectScore) refuses
// the message at DATA with 550 5.7.1, nothing stored; "soft reject" defers
// it with 451 4.7.1; "add header" and "rewrite subject" (or a score at or
// above Options.JunkScore) deliver it to Junk; "greylist" and "no action"
// deliver it to INBOX (greylisting is server/inbound's, at RCPT). Every
// scanned message gets X-Spam-Score and X-Spamd-Result fields, spam also
// X-Spam: Yes; such fields already in the message are removed. When rspamd
// cannot be reached or does not answer in time the message is accepted with
// "X-Spam-Scanned: no" and the failure is counted for `mailctl status`:
// mail is never lost to the filter.
//
// Learner posts messages to rspamd's controller (/learnspam, /learnham) in
// the background when an IMAP COPY or MOVE puts them into Junk or takes
// them out of it (to any mailbox but Trash).
//
// The client is written here on net/http: no Go module of the rspamd
// protocol is served by the module proxy, and the protocol is two JSON
// calls.
package spam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Default addresses of rspamd's workers (Debian's configuration).
const (
	DefaultURL           = "http://127.0.0.1:11333"
	DefaultControllerURL = "http://127.0.0.1:11334"
	// DefaultTimeout bounds one scan: rspamd answers in well under a
	// second, a few seconds when its DNS lookups are slow.
	DefaultTimeout = 20 * time.Second
)

// Client talks to one rspamd.
type Client struct {
	// URL of the normal worker (scans); ControllerURL of the controller
	// (learning).
	URL, ControllerURL string
	// Password is the controller's enable password, sent as the Password
	// header when set (learning from a loopback address needs none in
	// Debian's configuration: secure_ip).
	Password string
	// Timeout bounds each call. Default DefaultTimeout.
	Timeout time.Duration
	// HTTP defaults to a client of its own.
	HTTP *http.Client
}

// Request is the envelope of a message to scan.
type Request struct {
	From     string // reverse path, "" for the null sender
	Rcpts    []string
	IP       net.IP
	Helo     string
	Hostname string // the client's verified host name, if any
	QueueID  string
	User     string // the authenticated user, if any
}

// Symbol is one rule that matched.
type Symbol struct {
	Name    string   `json:"name"`
	Score   float64  `json:"score"`
	Options []string `json:"options,omitempty"`
}

// Result is rspamd's answer to /checkv2.
type Result struct {
	Action        string            `json:"action"`
	Score         float64           `json:"score"`
	RequiredScore float64           `json:"required_score"`
	Skipped       bool              `json:"is_skipped"`
	Symbols       map[string]Symbol `json:"symbols"`
	// Messages holds "smtp_message", the reply rspamd suggests.
	Messages map[string]any `json:"messages"`
	Milter   struct {
		// AddHeaders values are a string, an object with "value", or a
		// list of them.
		AddHeaders map[string]json.RawMessage `json:"add_headers"`
	} `json:"milter"`
}

// Actions rspamd answers.
const (
	ActionReject         = "reject"
	ActionSoftReject     = "soft reject"
	ActionRewriteSubject = "rewrite subject"
	ActionAddHeader      = "add header"
	ActionGreylist       = "greylist"
	ActionNoAction       = "no action"
)

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

// defaultHTTP never goes through a proxy: rspamd is on the same host or
// network.
var defaultHTTP = &http.Client{Transport: &http.Transport{
	DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	MaxIdleConnsPerHost: 8,
	IdleConnTimeout:     90 * time.Second,
}}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// Check posts the message to /checkv2.
func (c *Client) Check(ctx context.Context, req Request, msg io.Reader, size int64) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	base := c.URL
	if base == "" {
		base = DefaultURL
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+"/checkv2", msg)
	if err != nil {
		return nil, fmt.Errorf("rspamd check: %w", err)
	}
	hr.ContentLength = size
	hr.Header.Set("From", headerValue(req.From))
	for _, r := range req.Rcpts {
		hr.Header.Add("Rcpt", headerValue(r))
	}
	if req.IP != nil {
		hr.Header.Set("IP", req.IP.String())
	}
	set := func(k, v string) {
		if v = headerValue(v); v != "" {
			hr.Header.Set(k, v)
		}
	}
	set("Helo", req.Helo)
	set("Hostname", req.Hostname)
	set("Queue-Id", req.QueueID)
	set("User", req.User)
	resp, err := c.http().Do(hr)
	if err != nil {
		return nil, fmt.Errorf("rspamd check: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("rspamd check: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("rspamd check: %s: %s", resp.Status, errorText(body))
	}
	var res Result
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("rspamd check: answer: %w", err)
	}
	if res.Action == "" {
		return nil, fmt.Errorf("rspamd check: answer without an action: %s", errorText(body))
	}
	return &res, nil
}

// ErrAlreadyLearned is returned by Learn when rspamd already learned the
// message as that class.
var ErrAlreadyLearned = errors.New("rspamd: message already learned")

// Learn posts the message to the controller's /learnspam or /learnham.
func (c *Client) Learn(ctx context.Context, spam bool, msg io.Reader, size int64) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	base := c.ControllerURL
	if base == "" {
		base = DefaultControllerURL
	}
	path := "/learnham"
	if spam {
		path = "/learnspam"
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+path, msg)
	if err != nil {
		return fmt.Errorf("rspamd %s: %w", path[1:], err)
	}
	hr.ContentLength = size
	if c.Password != "" {
		hr.Header.Set("Password", c.Password)
	}
	resp, err := c.http().Do(hr)
	if err != nil {
		return fmt.Errorf("rspamd %s: %w", path[1:], err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	text := errorText(body)
	// rspamd answers 208 (or 404 in older versions) when it learned the
	// message as that class before.
	if resp.StatusCode == http.StatusAlreadyReported || strings.Contains(text, "already learned") {
		return ErrAlreadyLearned
	}
	return fmt.Errorf("rspamd %s: %s: %s", path[1:], resp.Status, text)
}

// errorText is rspamd's {"error": "..."} or the start of the body, on one
// line.
func errorText(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	s := string(body)
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		s = e.Error
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.Join(strings.Fields(s), " ")
}

// headerValue keeps v on one line.
func headerValue(v string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, v)
}

// milterValues reads an add_headers value: a string, {"value": ...}, or a
// list of them.
func milterValues(raw json.RawMessage) []string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}
	}
	var o struct {
		Value string `json:"value"`
	}
	if json.Unmarshal(raw, &o) == nil && o.Value != "" {
		return []string{o.Value}
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return nil
	}
	var out []string
	for _, l := range list {
		if len(l) > 0 && l[0] == '[' {
			continue // no nesting
		}
		out = append(out, milterValues(l)...)
	}
	return out
}
