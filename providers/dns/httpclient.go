package dns

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/mailctl/mailctl/providers/base"
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

func (e *APIError) Unwrap() error {
	switch e.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrAuth
	case http.StatusNotFound:
		return ErrNotFound
	}
	return e.Err
}

// The HTTP client of hosting APIs lives in providers/base, shared with the
// reverse DNS registry; these are its names here, for DNS adapters.

// HTTPOptions configures NewHTTPClient (see base.HTTPOptions).
type HTTPOptions = base.HTTPOptions

// TimeoutError is returned by the client when a request got no complete
// answer within HTTPOptions.Timeout.
type TimeoutError = base.TimeoutError

// Default timeouts of hosting-API calls.
const (
	DefaultTimeout        = base.DefaultTimeout
	DefaultConnectTimeout = base.DefaultConnectTimeout
)

// NewHTTPClient returns the hosting-API client (see base.NewHTTPClient).
func NewHTTPClient(o HTTPOptions) *http.Client { return base.NewHTTPClient(o) }

// Idempotent marks requests as safe to send twice (see base.Idempotent).
func Idempotent(ctx context.Context) context.Context { return base.Idempotent(ctx) }

// ParseTimeout reads a provider block's timeout attribute; errors wrap
// ErrConfig.
func ParseTimeout(v string, def time.Duration) (time.Duration, error) {
	return base.ParseTimeout(v, def, ErrConfig)
}

// TimeoutAttribute documents the timeout attribute with the kind's default.
func TimeoutAttribute(def time.Duration) Attribute { return base.TimeoutAttribute(def) }

// APIMessage is the text of a failed hosting-API call (see
// base.APIMessage).
func APIMessage(provider, op string, status int, credential, permission, message string) string {
	return base.APIMessage(provider, op, status, credential, permission, message)
}
