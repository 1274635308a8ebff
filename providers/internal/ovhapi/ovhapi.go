// Package ovhapi is the OVH API client that the DNS (providers/dns/ovh)
// and reverse DNS (providers/ptr/ovh) adapters share: requests signed by
// github.com/ovh/go-ovh (application key, secret and consumer key, as
// https://api.ovh.com/console describes), sent with mailctl's retrying
// HTTP client, and go-ovh's errors explained by credential.
package ovhapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	goovh "github.com/ovh/go-ovh/ovh"

	"github.com/mailctl/mailctl/providers/base"
)

// DefaultTimeout bounds one call, retries included: the OVH API often takes
// seconds to answer, more for a zone refresh.
const DefaultTimeout = 60 * time.Second

// Client signs and sends requests to one OVH account.
type Client struct {
	// mu serialises the use of ovh: go-ovh's NewRequest writes to its
	// http.Client, so requests are sent with a second client, hc.
	mu  sync.Mutex
	ovh *goovh.Client
	hc  *http.Client
	log *slog.Logger
}

// New returns a client for endpoint (a name such as "ovh-eu" or a URL). It
// reads no environment variable or configuration file and does no I/O.
func New(endpoint, appKey, appSecret, consumerKey string, log *slog.Logger) (*Client, error) {
	u := endpoint
	if !strings.Contains(endpoint, "/") {
		var ok bool
		if u, ok = goovh.Endpoints[endpoint]; !ok {
			return nil, fmt.Errorf("ovh: unknown endpoint %q (use ovh-eu, ovh-ca, ovh-us or a URL)", endpoint)
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Built by hand rather than with goovh.NewClient, which would take
	// OVH_* variables and ovh.conf files into account.
	c := &goovh.Client{AppKey: appKey, AppSecret: appSecret, ConsumerKey: consumerKey, Client: base.NewHTTPClient(base.HTTPOptions{Logger: log, Timeout: DefaultTimeout})}
	if err := c.SetEndpoint(strings.TrimSuffix(u, "/")); err != nil {
		return nil, fmt.Errorf("ovh: %v", err)
	}
	return &Client{ovh: c, hc: base.NewHTTPClient(base.HTTPOptions{Logger: log, Timeout: DefaultTimeout}), log: log}, nil
}

// SetHTTPOptions replaces the retry (HTTP 429 and 5xx) and timeout
// settings.
func (c *Client) SetHTTPOptions(o base.HTTPOptions) {
	if o.Logger == nil {
		o.Logger = c.log
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Two clients with the same settings: go-ovh's NewRequest writes
	// client.Client.Timeout on every request, which would race with the
	// requests in flight on a shared client.
	c.ovh.Client = base.NewHTTPClient(o)
	c.hc = base.NewHTTPClient(o)
}

// Call signs and sends one request, decoding the answer into out. Its
// errors are go-ovh's (see Explain).
func (c *Client) Call(ctx context.Context, method, path string, in, out any) error {
	c.mu.Lock()
	req, err := c.ovh.NewRequest(method, path, in, true)
	hc := c.hc
	c.mu.Unlock()
	if err != nil {
		return err
	}
	resp, err := hc.Do(req.WithContext(ctx))
	if err != nil {
		return err
	}
	return c.ovh.UnmarshalResponse(resp, out)
}

// Failure is an error of the OVH API in the user's terms.
type Failure struct {
	Status  int
	Message string
	// Credential names the attribute that was refused; "consumer_key"
	// when the API names none (a missing access rule).
	Credential string
}

// Explain says which credential an API error of Call is about; ok is
// false for errors that are not the API's (transport, decoding).
func Explain(err error) (f Failure, ok bool) {
	var ae *goovh.APIError
	if !errors.As(err, &ae) {
		return Failure{}, false
	}
	f = Failure{Status: ae.Code, Message: ae.Message, Credential: "consumer_key"}
	switch {
	case strings.Contains(ae.Message, "application key is invalid"):
		f.Status, f.Credential = http.StatusUnauthorized, "application_key"
	case strings.Contains(ae.Message, "Invalid signature"):
		f.Status, f.Credential = http.StatusUnauthorized, "application_secret (or application_key)"
	case strings.Contains(ae.Message, "credential does not exist"), strings.Contains(ae.Message, "credential is not valid"),
		strings.Contains(ae.Message, "must login"):
		f.Status, f.Credential = http.StatusUnauthorized, "consumer_key (not validated, expired or revoked)"
	case strings.Contains(ae.Message, "out of time"):
		f.Message += ": the local clock is off"
	}
	return f, true
}
