package imap

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// goneProbe returns a function that reports whether the client closed
// (FIN) or reset its TCP connection with nothing left unread in the
// kernel but a TLS close_notify, or nil when the connection is not a
// socket.
func (c *conn) goneProbe() func() bool {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	tls := c.isTLS()
	return func() bool {
		gone := false
		raw.Control(func(fd uintptr) {
			info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			if err != nil {
				return
			}
			switch info.State {
			case unix.BPF_TCP_CLOSE_WAIT, unix.BPF_TCP_CLOSE, unix.BPF_TCP_LAST_ACK:
			default:
				return
			}
			// Nothing unread, or over TLS no more than a close_notify
			// alert (24 bytes in TLS 1.3, 31 in TLS 1.2 with AES-GCM).
			unread, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
			gone = err == nil && (unread == 0 || tls && unread <= 31)
		})
		return gone
	}
}
