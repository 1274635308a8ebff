package daemon

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/store"
	"github.com/mailctl/mailctl/server/web"
)

// countingListener counts accepted connections per service.
type countingListener struct {
	net.Listener
	service string
	metrics *web.Metrics
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.metrics.Connection(l.service)
	}
	return c, err
}

// countingAuth counts failed logins per service.
type countingAuth struct {
	auth interface {
		Authenticate(ctx context.Context, username, password string, remote net.Addr) (string, error)
	}
	service string
	metrics *web.Metrics
}

func (a countingAuth) Authenticate(ctx context.Context, username, password string, remote net.Addr) (string, error) {
	user, err := a.auth.Authenticate(ctx, username, password, remote)
	if err != nil && (errors.Is(err, auth.ErrInvalidCredentials) || errors.Is(err, auth.ErrTooManyFailures)) {
		a.metrics.AuthFailure(a.service)
	}
	return user, err
}

// countingStore counts SMTP deliveries into the store. It keeps the
// store's Usage and Quota so that the SMTP server still refuses
// over-quota recipients at RCPT.
type countingStore struct {
	st      store.Backend
	metrics *web.Metrics
}

func (c countingStore) Deliver(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uint32, error) {
	uid, err := c.st.Deliver(ctx, user, mailbox, body, flags, date)
	switch {
	case err == nil:
		c.metrics.Delivery("delivered")
	case errors.Is(err, store.ErrQuotaExceeded):
		c.metrics.Delivery("rejected")
	default:
		c.metrics.Delivery("failed")
	}
	return uid, err
}

func (c countingStore) Usage(ctx context.Context, user string) (int64, int, error) {
	return c.st.Usage(ctx, user)
}

func (c countingStore) Quota(ctx context.Context, user string) (int64, error) {
	return c.st.Quota(ctx, user)
}
