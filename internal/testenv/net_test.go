package testenv_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
)

func TestForward(t *testing.T) {
	t.Parallel()
	// An echo server upper-casing what it reads, behind the forwarder.
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					io.WriteString(c, strings.ToUpper(l))
				}
			}()
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Forward(t, ln, up.Addr().String())
	for i, msg := range []string{"hello\n", "second connection\n"} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, msg)
		got, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || got != strings.ToUpper(msg) {
			t.Errorf("connection %d: got %q, %v; want %q", i, got, err, strings.ToUpper(msg))
		}
	}
}

func TestSMTPGreeter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, banner string
		send         []string
		want         []string // the greeting, then an answer per line sent
	}{
		{"greeting and QUIT", "220 probe.test ESMTP", []string{"QUIT"}, []string{"220 probe.test ESMTP", "221 bye"}},
		{"commands then QUIT", "220-mx.test ESMTP", []string{"EHLO client.test", "NOOP", "quit"}, []string{"220-mx.test ESMTP", "250 ok", "250 ok", "221 bye"}},
		{"no banner: closed at once", "", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", testenv.SMTPGreeter(t, tc.banner))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			var got []string
			read := func() {
				if l, err := r.ReadString('\n'); err == nil {
					got = append(got, strings.TrimSuffix(l, "\r\n"))
				}
			}
			read()
			for _, s := range tc.send {
				io.WriteString(c, s+"\r\n")
				read()
			}
			if rest, err := r.ReadString('\n'); err != io.EOF {
				t.Errorf("after the exchange: %q, %v; want the connection closed", rest, err)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
