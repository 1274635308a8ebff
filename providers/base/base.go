// Package base is what the DNS (providers/dns) and reverse DNS
// (providers/ptr) provider registries share: the configuration a provider
// block gives an adapter (Config, Attribute and their check), the HTTP
// client of hosting APIs (timeouts, retries with back-off, Retry-After)
// and the text of a failed API call. Neither registry imports the other.
package base

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"time"
)

// Attribute documents one configuration attribute of a provider kind.
type Attribute struct {
	Name string
	// Required attributes must be set; others have a default.
	Required bool
	// Sensitive values are secrets: never printed, logged or planned.
	Sensitive bool
	// Doc is a one-line description, shown by validation errors.
	Doc string
}

// Config is what a factory receives: the provider block's attributes as
// strings (secrets included: do not log them) and a logger. One provider
// block configures a kind in both registries.
type Config struct {
	// Name is the provider's label in the configuration, for messages.
	Name string
	// Attrs maps attribute names to values.
	Attrs map[string]string
	// Logger receives debug logs of API calls; nil means discard.
	Logger *slog.Logger
}

// Get returns the attribute name, or def when it is unset or empty.
func (c Config) Get(name, def string) string {
	if v, ok := c.Attrs[name]; ok && v != "" {
		return v
	}
	return def
}

// Log returns the configured logger or one that discards.
func (c Config) Log() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// CheckAttributes reports, each wrapping errConfig, the required attributes
// of kind missing from given and the given ones kind does not declare.
func CheckAttributes(kind string, declared []Attribute, given map[string]string, errConfig error) error {
	known := map[string]bool{}
	var errs []error
	for _, a := range declared {
		known[a.Name] = true
		if a.Required && given[a.Name] == "" {
			errs = append(errs, fmt.Errorf("%w: provider %q needs attribute %q (%s)", errConfig, kind, a.Name, a.Doc))
		}
	}
	var unknown []string
	for name := range given {
		if !known[name] {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	for _, name := range unknown {
		errs = append(errs, fmt.Errorf("%w: provider %q has no attribute %q", errConfig, kind, name))
	}
	return errors.Join(errs...)
}

// APIMessage is the text of a failed hosting-API call: what was being done,
// and for HTTP 401/403 which credential was refused and which permission
// it needs. The DNS and reverse DNS errors (providers/dns, providers/ptr) share it.
func APIMessage(provider, op string, status int, credential, permission, message string) string {
	var msg string
	switch status {
	case http.StatusUnauthorized:
		msg = fmt.Sprintf("%s: %s: the %s was refused (HTTP 401): check that it is correct and not expired", provider, op, credential)
	case http.StatusForbidden:
		msg = fmt.Sprintf("%s: %s: the %s lacks a permission (HTTP 403): it needs %s", provider, op, credential, permission)
	case 0:
		msg = fmt.Sprintf("%s: %s", provider, op)
	default:
		msg = fmt.Sprintf("%s: %s: HTTP %d", provider, op, status)
	}
	if message != "" {
		msg += ": " + message
	}
	return msg
}

// HTTPOptions configures NewHTTPClient. Zero values take the defaults.
type HTTPOptions struct {
	// Attempts is the number of tries of a request answered 429 or 5xx or
	// failing in transport (default 4). Only requests that can be sent
	// twice are tried again: see Idempotent.
	Attempts int
	// MinBackoff and MaxBackoff bound the exponential back-off with jitter
	// between tries (defaults 250ms and 8s); a Retry-After header is
	// honoured up to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds the whole request: every try, the waits between
	// them and the reading of the answer's body (default 30s). It is the
	// provider block's timeout attribute.
	Timeout time.Duration
	// TryTimeout bounds one try (default half of Timeout, so that a try
	// that hangs leaves time for another).
	TryTimeout time.Duration
	// ConnectTimeout bounds the TCP connection and TLS handshake of a try
	// (default 10s). It applies to the default transport only.
	ConnectTimeout time.Duration
	// Transport is the underlying transport (default: a clone of
	// http.DefaultTransport with ConnectTimeout).
	Transport http.RoundTripper
	// Logger receives one debug line per retry (no URLs' secrets, no bodies).
	Logger *slog.Logger
}

// Default timeouts of hosting-API calls.
const (
	DefaultTimeout        = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
)

// ParseTimeout reads the timeout attribute of a provider block ("45s",
// "2m"); empty is def. The value must be between 1s and 10m; the error
// wraps errConfig, the registry's configuration error.
func ParseTimeout(v string, def time.Duration, errConfig error) (time.Duration, error) {
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%w: timeout %q is not a duration such as \"30s\" or \"2m\"", errConfig, v)
	}
	if d < time.Second || d > 10*time.Minute {
		return 0, fmt.Errorf("%w: timeout %q must be between 1s and 10m", errConfig, v)
	}
	return d, nil
}

// TimeoutAttribute documents the timeout attribute that every HTTP
// provider kind takes, with the kind's default.
func TimeoutAttribute(def time.Duration) Attribute {
	return Attribute{Name: "timeout", Doc: fmt.Sprintf("longest wait for one API call, retries included (a duration, default %s)", def)}
}

// TimeoutError is returned by the client when a request got no complete
// answer within HTTPOptions.Timeout.
type TimeoutError struct {
	Timeout time.Duration
	Tries   int
	// Last is the last try's error, if any.
	Last error
}

func (e *TimeoutError) Error() string {
	msg := fmt.Sprintf("no answer within %s (%d %s; raise the provider's timeout attribute if the API is this slow)", e.Timeout, e.Tries, plural(e.Tries, "try", "tries"))
	if e.Last != nil && !errors.Is(e.Last, context.DeadlineExceeded) {
		msg += ": last error: " + e.Last.Error()
	}
	return msg
}

// Unwrap lets errors.Is(err, context.DeadlineExceeded) hold.
func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

type idempotentKey struct{}

// Idempotent marks the requests made with the returned context as safe to
// send twice, whatever their method: a POST or PATCH that sets absolute
// values (a record's TTL and data, a reverse name) rather than creating
// something. Without the mark, the client tries POST and PATCH again only
// when the API cannot have acted on them (HTTP 429, a refused connection):
// a create whose answer was lost must be read back instead (see
// CreateOnce).
func Idempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, idempotentKey{}, true)
}

func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodTrace:
		return true
	}
	v, _ := req.Context().Value(idempotentKey{}).(bool)
	return v
}

// notSent reports whether err is a transport error that happened before
// the request could reach the server (the connection was refused), so that
// sending it again cannot repeat its effect.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// NewHTTPClient returns an HTTP client for hosting APIs: every request runs
// under a timeout (connection, try and whole request) and idempotent
// requests answered 429 or 5xx, or failing in transport, are tried again
// with exponential back-off. Requests with a body are retried only when it
// can be replayed (http.NewRequest sets GetBody for in-memory bodies).
func NewHTTPClient(o HTTPOptions) *http.Client {
	if o.Attempts <= 0 {
		o.Attempts = 4
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 8 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.TryTimeout <= 0 || o.TryTimeout > o.Timeout {
		o.TryTimeout = o.Timeout / 2
		if o.Attempts == 1 {
			o.TryTimeout = o.Timeout
		}
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.Transport == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext
		tr.TLSHandshakeTimeout = o.ConnectTimeout
		o.Transport = tr
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &http.Client{Transport: &retryTransport{o: o}}
}

type retryTransport struct{ o HTTPOptions }

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	parent := req.Context()
	ctx, cancelAll := context.WithTimeout(parent, t.o.Timeout)
	resp, err := t.roundTrip(ctx, req)
	if err != nil {
		cancelAll()
		if parent.Err() == nil && ctx.Err() != nil {
			return nil, &TimeoutError{Timeout: t.o.Timeout, Tries: triesOf(err), Last: lastOf(err)}
		}
		return nil, unwrapTries(err)
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancelAll}
	return resp, nil
}

// triesErr carries the number of tries out of roundTrip.
type triesErr struct {
	tries int
	err   error
}

func (e *triesErr) Error() string { return e.err.Error() }
func (e *triesErr) Unwrap() error { return e.err }

func triesOf(err error) int {
	var te *triesErr
	if errors.As(err, &te) {
		return te.tries
	}
	return 1
}

func lastOf(err error) error {
	var te *triesErr
	if errors.As(err, &te) {
		return te.err
	}
	return err
}

func unwrapTries(err error) error {
	var te *triesErr
	if errors.As(err, &te) {
		return te.err
	}
	return err
}

func (t *retryTransport) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	var lastErr error
	for attempt := 0; ; attempt++ {
		fail := func(err error) (*http.Response, error) { return nil, &triesErr{tries: attempt + 1, err: err} }
		r := req
		if attempt > 0 {
			if req.Body != nil && req.GetBody == nil {
				return fail(lastErr)
			}
			r = req.Clone(ctx)
			if req.GetBody != nil {
				b, err := req.GetBody()
				if err != nil {
					return fail(err)
				}
				r.Body = b
			}
		}
		tctx, cancel := context.WithTimeout(ctx, t.o.TryTimeout)
		resp, err := t.o.Transport.RoundTrip(r.WithContext(tctx))
		retryable := false
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				cancel()
				return fail(err)
			}
			lastErr = err
			retryable = idempotent(req) || notSent(err)
		case resp.StatusCode == http.StatusTooManyRequests:
			// Refused before being acted on: safe to send again.
			wait = retryAfter(resp.Header.Get("Retry-After"))
			retryable = true
		case resp.StatusCode >= 500:
			wait = retryAfter(resp.Header.Get("Retry-After"))
			retryable = idempotent(req)
		}
		if !retryable || attempt+1 >= t.o.Attempts {
			if err != nil {
				cancel()
				return fail(err)
			}
			resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
			return resp, nil
		}
		if resp != nil {
			lastErr = fmt.Errorf("HTTP %d", resp.StatusCode)
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		cancel()
		if wait <= 0 {
			wait = Backoff(attempt, t.o.MinBackoff, t.o.MaxBackoff)
		}
		wait = min(wait, t.o.MaxBackoff)
		t.o.Logger.DebugContext(ctx, "retrying API call", "method", req.Method, "host", req.URL.Host, "path", req.URL.Path, "attempt", attempt+1, "error", lastErr, "wait", wait)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fail(lastErr)
		case <-timer.C:
		}
	}
}

// Backoff returns an "equal jitter" exponential delay for attempt
// (0-based): half of the exponential step, plus a random part of up to the
// other half, so that the wait never falls far below the step.
func Backoff(attempt int, lo, hi time.Duration) time.Duration {
	d := lo << min(attempt, 20)
	if d > hi || d <= 0 {
		d = hi
	}
	return d/2 + rand.N(d/2+1)
}

func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}

// cancelBody releases the try's timeout context when the body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
