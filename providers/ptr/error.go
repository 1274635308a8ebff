package ptr

import (
	"errors"
	"net/http"

	"github.com/mailctl/mailctl/providers/base"
)

// Sentinel errors wrapped by APIError, for errors.Is.
var (
	// ErrAuth means the credential was refused (HTTP 401) or lacks a
	// permission (HTTP 403).
	ErrAuth = errors.New("ptr: credential refused")
	// ErrNotFound means the account holds no such address.
	ErrNotFound = errors.New("ptr: address not found")
	// ErrNotResolving means the provider refuses the PTR because the
	// hostname does not (yet) resolve to the address: create the A/AAAA
	// record first, then wait for it to be served.
	ErrNotResolving = errors.New("ptr: hostname does not resolve to the address")
)

// APIError describes a failed call to a hosting API in terms the user can act
// on: which credential was refused and which permission it needs.
type APIError struct {
	// Provider is the kind ("ovh"), Op what was being done ("set the PTR
	// of 192.0.2.1 to mx1.example.org").
	Provider, Op string
	// Status is the HTTP status (0 for transport errors and local checks).
	Status int
	// Credential names the attribute(s) holding the credential, e.g.
	// "token"; Permission the permission it needs, e.g. "Read & Write".
	Credential, Permission string
	// Message is the API's own message, or mailctl's explanation.
	Message string
	// Err is the underlying error; for errors.Is it is reported after the
	// status' sentinel (ErrAuth, ErrNotFound).
	Err error
}

func (e *APIError) Error() string {
	msg := base.APIMessage(e.Provider, e.Op, e.Status, e.Credential, e.Permission, e.Message)
	if e.Err != nil && e.Status == 0 && !errors.Is(e.Err, ErrNotFound) && !errors.Is(e.Err, ErrNotResolving) {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the status' sentinel and the underlying error.
func (e *APIError) Unwrap() []error {
	var errs []error
	switch e.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		errs = append(errs, ErrAuth)
	case http.StatusNotFound:
		errs = append(errs, ErrNotFound)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}
