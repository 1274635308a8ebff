package imap

import (
	"context"
	"errors"
	"fmt"
	"sync"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailctl/mailctl/server/auth"
)

// ConnLimits caps the IMAP sessions per client address (auth.ClientKey:
// an IPv4 address or an IPv6 /64) and per user and address. One value is
// shared by the servers of every IMAP port, so that 143 and 993 count
// together. It is safe for concurrent use.
type ConnLimits struct {
	perIP, perUserIP int
	counts           connCounts
}

// NewConnLimits caps connections at perIP per client address (beyond it
// a connection is greeted with BYE [UNAVAILABLE]) and sessions at
// perUserIP per user and address, as Dovecot's mail_max_userip_connections
// (beyond it LOGIN answers NO [UNAVAILABLE]). 0 leaves a cap out.
func NewConnLimits(perIP, perUserIP int) *ConnLimits {
	return &ConnLimits{perIP: perIP, perUserIP: perUserIP}
}

// connCounts counts the sessions per client address and per user and
// address.
type connCounts struct {
	mu     sync.Mutex
	ip     map[string]int
	userIP map[[2]string]int
}

// admitIP counts a new connection from ip, unless it has max already.
func (c *connCounts) admitIP(ip string, max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ip == nil {
		c.ip = map[string]int{}
	}
	if c.ip[ip] >= max {
		return false
	}
	c.ip[ip]++
	return true
}

func (c *connCounts) releaseIP(ip string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ip[ip]--; c.ip[ip] <= 0 {
		delete(c.ip, ip)
	}
}

// admitUser counts a session logged in as user from ip, unless there are
// max already.
func (c *connCounts) admitUser(user, ip string, max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.userIP == nil {
		c.userIP = map[[2]string]int{}
	}
	k := [2]string{user, ip}
	if c.userIP[k] >= max {
		return false
	}
	c.userIP[k]++
	return true
}

func (c *connCounts) releaseUser(user, ip string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := [2]string{user, ip}
	if c.userIP[k]--; c.userIP[k] <= 0 {
		delete(c.userIP, k)
	}
}

// errTooManyConns is the greeting of a connection beyond the per-address cap.
var errTooManyConns = &goimap.Error{Type: goimap.StatusResponseTypeBye, Code: goimap.ResponseCodeUnavailable,
	Text: "Too many connections from your address, try later"}

// admitConn counts a new session's connection against its address's cap;
// nil if admitted, else the BYE greeting to send.
func (s *session) admitConn() error {
	s.clientKey = auth.ClientKey(s.conn.RemoteAddr())
	l := s.srv.opts.ConnLimits
	if l == nil || l.perIP <= 0 {
		return nil
	}
	if !l.counts.admitIP(s.clientKey, l.perIP) {
		s.logger.Warn("imap connection refused: too many from this address", "ip", s.clientKey, "max", l.perIP)
		return errTooManyConns
	}
	s.counted = true
	return nil
}

// releaseConn undoes admitConn and admitLogin when the session ends.
func (s *session) releaseConn() {
	if s.counted {
		s.counted = false
		s.srv.opts.ConnLimits.counts.releaseIP(s.clientKey)
	}
	s.releaseLogin()
}

// releaseLogin undoes admitLogin.
func (s *session) releaseLogin() {
	if s.countedUser != "" {
		s.srv.opts.ConnLimits.counts.releaseUser(s.countedUser, s.clientKey)
		s.countedUser = ""
	}
}

// admitLogin counts a session of user against the per-user-and-address
// cap; nil if admitted, else the tagged NO for LOGIN/AUTHENTICATE.
func (s *session) admitLogin(user string) error {
	l := s.srv.opts.ConnLimits
	if l == nil || l.perUserIP <= 0 {
		return nil
	}
	max := l.perUserIP
	if !l.counts.admitUser(user, s.clientKey, max) {
		s.logger.Warn("imap login refused: too many connections of this user from this address", "user", user, "ip", s.clientKey, "max", max)
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeUnavailable,
			Text: fmt.Sprintf("Too many connections of this user from your address (at most %d), try later", max)}
	}
	s.countedUser = user
	return nil
}

// loginError turns an Authenticator's error into the answer to LOGIN or
// AUTHENTICATE: a wrong password is AUTHENTICATIONFAILED; a lockout and a
// check that could not finish are UNAVAILABLE, so that a client does not
// take them for a wrong password and ask the user for another.
func loginError(err error) error {
	switch {
	case errors.Is(err, auth.ErrTooManyFailures):
		text := "Too many failed logins from your address, try again later"
		var le *auth.LockoutError
		if errors.As(err, &le) {
			text = fmt.Sprintf("Too many failed logins from your address, try again in %d minutes", le.RetryMinutes())
		}
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeUnavailable, Text: text}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeUnavailable,
			Text: "Temporary authentication failure, try again"}
	default: // auth.ErrInvalidCredentials
		return imapserver.ErrAuthFailed
	}
}
