package dns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// Sentinel errors wrapped by APIError, for errors.Is.
var (
	// ErrAuth means the credential was refused (HTTP 401) or lacks a
	// permission (HTTP 403).
	ErrAuth = errors.New("dns: credential refused")
	// ErrNotFound means the zone or record does not exist for this account.
	ErrNotFound = errors.New("dns: not found")
)

// APIError describes a failed call to a hosting API in terms the user can act
// on: which credential was refused and which permission it needs.
type APIError struct {
	// Provider is the kind ("cloudflare"), Op what was being done
	// ("list records of zone example.org").
	Provider, Op string
	// Status is the HTTP status (0 for transport errors).
	Status int
	// Credential names the attribute(s) holding the credential, e.g.
	// "api_token"; Permission the permission it needs, e.g.
	// "Zone.DNS:Edit".
	Credential, Permission string
	// Message is the API's own message.
	Message string
	Err     error
}

func (e *APIError) Error() string {
	msg := APIMessage(e.Provider, e.Op, e.Status, e.Credential, e.Permission, e.Message)
	if e.Err != nil && e.Status == 0 {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// APIMessage is the text of a failed hosting-API call: what was being done,
// and for HTTP 401/403 which credential was refused and which permission
// it needs. The DNS and reverse DNS errors share it.
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

func (e *APIError) Unwrap() error {
	switch e.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrAuth
	case http.StatusNotFound:
		return ErrNotFound
	}
	return e.Err
}

// HTTPOptions configures NewHTTPClient. Zero values take the defaults.
type HTTPOptions struct {
	// Attempts is the number of tries of a request answered 429 or 5xx or
	// failing in transport (default 4).
	Attempts int
	// MinBackoff and MaxBackoff bound the exponential back-off with jitter
	// between tries (defaults 250ms and 8s); a Retry-After header is
	// honoured up to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds each try, body included (default 30s).
	Timeout time.Duration
	// Transport is the underlying transport (default http.DefaultTransport).
	Transport http.RoundTripper
	// Logger receives one debug line per retry (no URLs' secrets, no bodies).
	Logger *slog.Logger
}

// NewHTTPClient returns an HTTP client for hosting APIs: every try runs under
// a timeout and requests answered 429 or 5xx, or failing in transport, are
// retried with exponential back-off. Requests with a body are retried only
// when it can be replayed (http.NewRequest sets GetBody for in-memory bodies).
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
		o.Timeout = 30 * time.Second
	}
	if o.Transport == nil {
		o.Transport = http.DefaultTransport
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &http.Client{Transport: &retryTransport{o: o}}
}

type retryTransport struct{ o HTTPOptions }

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	var lastErr error
	for attempt := 0; ; attempt++ {
		r := req
		if attempt > 0 {
			if req.Body != nil && req.GetBody == nil {
				return nil, lastErr
			}
			r = req.Clone(ctx)
			if req.GetBody != nil {
				b, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				r.Body = b
			}
		}
		tctx, cancel := context.WithTimeout(ctx, t.o.Timeout)
		resp, err := t.o.Transport.RoundTrip(r.WithContext(tctx))
		retryable := false
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				cancel()
				return nil, err
			}
			lastErr = err
			retryable = true
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			wait = retryAfter(resp.Header.Get("Retry-After"))
			retryable = true
		}
		if !retryable || attempt+1 >= t.o.Attempts {
			if err != nil {
				cancel()
				return nil, err
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
			wait = backoff(attempt, t.o.MinBackoff, t.o.MaxBackoff)
		}
		wait = min(wait, t.o.MaxBackoff)
		t.o.Logger.DebugContext(ctx, "retrying API call", "method", req.Method, "host", req.URL.Host, "path", req.URL.Path, "attempt", attempt+1, "error", lastErr, "wait", wait)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

// backoff returns a full-jitter exponential delay for attempt (0-based).
func backoff(attempt int, lo, hi time.Duration) time.Duration {
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
