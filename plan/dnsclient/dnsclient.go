// Package dnsclient is the one DNS query client of the provisioner: mailctl
// verify and preflight ask recursive resolvers with it, the propagation
// wait asks each authoritative server.
//
// miekg/dns does the messages; its Client is not used for the exchange
// because it honours only a context's deadline, not its cancellation: an
// interrupted verify or propagation wait would otherwise keep waiting on a
// silent server for the whole query timeout.
package dnsclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// DefaultTimeout bounds one query to one server when Client.Timeout is
// zero.
const DefaultTimeout = 3 * time.Second

// Client sends queries to Servers (host:port), in order, until one
// answers, over UDP with a TCP retry on truncation. A response with rcode
// NOERROR or NXDOMAIN is returned as is; any other rcode, or no answer, is
// an error.
type Client struct {
	Servers []string
	// Recurse sets the RD bit (for recursive resolvers); clear it to query
	// authoritative servers.
	Recurse bool
	// Timeout per server; default DefaultTimeout.
	Timeout time.Duration
}

// Query asks the servers for the qtype records of name. It returns as
// soon as ctx ends, with an error that matches ctx.Err().
func (c *Client) Query(ctx context.Context, name string, qtype uint16) (*mdns.Msg, error) {
	if len(c.Servers) == 0 {
		return nil, errors.New("dnsclient: no server to query")
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	m.RecursionDesired = c.Recurse
	m.SetEdns0(4096, false)
	var errs []error
	for _, srv := range c.Servers {
		r, err := exchange(ctx, "udp", srv, m, timeout)
		if err == nil && r.Truncated {
			r, err = exchange(ctx, "tcp", srv, m, timeout)
		}
		if err == nil && r.Rcode != mdns.RcodeSuccess && r.Rcode != mdns.RcodeNameError {
			err = fmt.Errorf("rcode %s", mdns.RcodeToString[r.Rcode])
		}
		if err == nil {
			return r, nil
		}
		errs = append(errs, fmt.Errorf("query %s %s at %s: %w", strings.TrimSuffix(mdns.Fqdn(name), "."), mdns.TypeToString[qtype], srv, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// exchange sends m to addr over network and reads the response with its
// id, for at most timeout, and no longer than ctx lasts.
func exchange(parent context.Context, network, addr string, m *mdns.Msg, timeout time.Duration) (*mdns.Msg, error) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, ctxErr(parent, err)
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	conn.SetDeadline(dl)
	// Interrupt the read when ctx ends before the deadline. Once the
	// interruption started, wait for it: nothing of the exchange outlives it.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		conn.SetDeadline(time.Now())
	})
	defer func() {
		if !stop() {
			<-fired
		}
	}()
	co := &mdns.Conn{Conn: conn, UDPSize: 4096}
	if err := co.WriteMsg(m); err != nil {
		return nil, ctxErr(parent, err)
	}
	for {
		r, err := co.ReadMsg()
		if err != nil {
			return nil, ctxErr(parent, err)
		}
		if r.Id == m.Id {
			return r, nil
		}
	}
}

// ctxErr prefers the caller's ctx error to the I/O error it caused; the
// end of the query's own timeout stays an I/O timeout (a net.Error).
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}
