package testenv

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// Forward relays every connection accepted on ln to the TCP address to,
// both ways, until ln is closed; it closes ln when the test ends. ln may be
// any listener: a loopback one (a TCP-only path to a server, as `ssh -R`
// gives), or one an SSH client opened on a remote machine.
func Forward(t testing.TB, ln net.Listener, to string) {
	t.Helper()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.Dial("tcp", to)
				if err != nil {
					return
				}
				defer out.Close()
				go io.Copy(out, in)
				io.Copy(in, out)
			}()
		}
	}()
}

// SMTPGreeter listens on 127.0.0.1 and answers each connection as a remote
// SMTP server would (RFC 5321 section 4.2): banner, then "250 ok" to every
// command until QUIT, answered "221 bye". An empty banner closes each
// connection at once, with no greeting. It returns the address.
func SMTPGreeter(t testing.TB, banner string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if banner == "" {
					return
				}
				c.SetDeadline(time.Now().Add(30 * time.Second))
				fmt.Fprintf(c, "%s\r\n", banner)
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if strings.HasPrefix(strings.ToUpper(l), "QUIT") {
						fmt.Fprintf(c, "221 bye\r\n")
						return
					}
					fmt.Fprintf(c, "250 ok\r\n")
				}
			}()
		}
	}()
	return ln.Addr().String()
}
