package queue

import (
	"net"
	"sync"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// Connection reuse, like Postfix's connection cache: after a transaction a
// healthy connection is kept idle for a short while and the next delivery
// to the same address (with the same TLS and relay settings) sends RSET
// and uses it, saving the TCP and TLS handshakes.
const (
	connIdleTime = 2 * time.Second
	connMaxUses  = 100
)

type pooledConn struct {
	c    *gosmtp.Client
	conn net.Conn
	uses int
}

func (pc *pooledConn) close() {
	pc.conn.SetDeadline(time.Now().Add(2 * time.Second))
	pc.c.Quit()
	pc.c.Close()
}

type connCache struct {
	mu     sync.Mutex
	idle   map[string][]*idleConn
	closed bool
}

type idleConn struct {
	pc    *pooledConn
	timer *time.Timer
}

func (cc *connCache) take(key string) *pooledConn {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	list := cc.idle[key]
	for len(list) > 0 {
		ic := list[len(list)-1]
		list = list[:len(list)-1]
		cc.idle[key] = list
		if ic.timer.Stop() {
			return ic.pc
		}
	}
	return nil
}

// release keeps a healthy connection for reuse, or closes it.
func (cc *connCache) release(key string, pc *pooledConn, healthy bool) {
	if !healthy || pc.uses >= connMaxUses {
		go pc.close()
		return
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed {
		go pc.close()
		return
	}
	if cc.idle == nil {
		cc.idle = map[string][]*idleConn{}
	}
	ic := &idleConn{pc: pc}
	ic.timer = time.AfterFunc(connIdleTime, func() {
		cc.mu.Lock()
		list := cc.idle[key]
		for i, x := range list {
			if x == ic {
				cc.idle[key] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		if len(cc.idle[key]) == 0 {
			delete(cc.idle, key)
		}
		cc.mu.Unlock()
		pc.close()
	})
	cc.idle[key] = append(cc.idle[key], ic)
}

// closeAll closes the idle connections; later releases close at once.
func (cc *connCache) closeAll() {
	cc.mu.Lock()
	cc.closed = true
	var all []*pooledConn
	for k, list := range cc.idle {
		for _, ic := range list {
			if ic.timer.Stop() {
				all = append(all, ic.pc)
			}
		}
		delete(cc.idle, k)
	}
	cc.mu.Unlock()
	for _, pc := range all {
		pc.close()
	}
}
