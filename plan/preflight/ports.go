package preflight

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/verify"
	"github.com/mailctl/mailctl/remote"
)

// listener is a listening TCP socket of /proc/net/tcp or tcp6.
type listener struct {
	addr  netip.Addr
	port  int
	inode string
}

// tcpListen is the st value of a listening socket (TCP_LISTEN).
const tcpListen = "0A"

// parseProcNetTCP returns the listening sockets of /proc/net/tcp and
// /proc/net/tcp6 content (concatenated).
func parseProcNetTCP(b []byte) []listener {
	var out []listener
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 10 || f[3] != tcpListen {
			continue
		}
		hexAddr, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		port, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil {
			continue
		}
		addr, ok := procAddr(hexAddr)
		if !ok {
			continue
		}
		out = append(out, listener{addr: addr, port: int(port), inode: f[9]})
	}
	return out
}

// procAddr decodes an address of /proc/net/tcp: 32-bit words in host byte
// order (little-endian on every architecture mailctl runs on).
func procAddr(h string) (netip.Addr, bool) {
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.Addr{}, false
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	a, _ := netip.AddrFromSlice(b)
	return a.Unmap(), true
}

// owner is a process holding a listening socket.
type owner struct {
	pid, inode, comm, exe, unit string
}

// isMailctl reports whether the process is mailctl (a deployment or the
// lab).
func (o owner) isMailctl() bool {
	return o.comm == "mailctl" || path.Base(o.exe) == "mailctl"
}

func (o owner) String() string {
	name := o.comm
	if name == "" {
		name = path.Base(o.exe)
	}
	s := fmt.Sprintf("%s (pid %s", name, o.pid)
	if o.unit != "" {
		s += ", " + o.unit
	}
	return s + ")"
}

// parseOwners reads the owner lines of ownersScript: pid, socket link,
// comm, exe and systemd unit, tab-separated.
func parseOwners(b []byte) map[string][]owner {
	m := map[string][]owner{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, "\t")
		if len(f) < 5 {
			continue
		}
		inode := strings.TrimSuffix(strings.TrimPrefix(f[1], "socket:["), "]")
		o := owner{pid: f[0], inode: inode, comm: f[2], exe: f[3], unit: f[4]}
		if !slices.ContainsFunc(m[inode], func(x owner) bool { return x.pid == o.pid }) {
			m[inode] = append(m[inode], o)
		}
	}
	return m
}

// ownersScript finds the processes holding the socket inodes through
// /proc/PID/fd (root sees every process).
func ownersScript(inodes []string) string {
	var pat []string
	for _, i := range inodes {
		pat = append(pat, `-lname 'socket:\[`+i+`\]'`)
	}
	return `for f in $(find /proc/[0-9]*/fd \( ` + strings.Join(pat, " -o ") + ` \) 2>/dev/null); do
p=${f#/proc/}; p=${p%%/*}
printf '%s\t%s\t%s\t%s\t%s\n' "$p" "$(readlink "$f")" "$(cat /proc/$p/comm 2>/dev/null)" "$(readlink /proc/$p/exe 2>/dev/null)" "$(sed -n 's|.*/\([^/]*\.service\)$|\1|p' /proc/$p/cgroup 2>/dev/null | head -n 1)"
done
exit 0`
}

// port is one port the server listens on.
type port struct {
	n    int
	name string
}

// serverPorts lists the server's configured ports, by number.
func serverPorts(s *config.Server) []port {
	p := s.Ports
	all := []port{{p.SMTP, "smtp"}, {p.Submission, "submission"}, {p.Submissions, "submissions"},
		{p.IMAP, "imap"}, {p.IMAPS, "imaps"}, {p.HTTPS, "https"}, {p.HTTP, "http"}}
	all = slices.DeleteFunc(all, func(x port) bool { return x.n == 0 })
	slices.SortFunc(all, func(a, b port) int { return a.n - b.n })
	return all
}

// checkPorts checks that no other program listens on the server's ports.
func checkPorts(ctx context.Context, t remote.Target, s *config.Server) verify.Result {
	ports := serverPorts(s)
	if len(ports) == 0 {
		return verify.Result{Status: verify.Skip, Detail: "the server listens on no port (every port is 0 in its ports block)"}
	}
	out, err := t.Run(ctx, "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; exit 0", nil)
	if err != nil {
		return verify.Result{Status: verify.Fail, Detail: "read /proc/net/tcp: " + err.Error(),
			Fix: "check that the server runs Linux, then run mailctl preflight again"}
	}
	ls := parseProcNetTCP(out)
	held := map[int][]listener{}
	var inodes []string
	for _, l := range ls {
		if slices.ContainsFunc(ports, func(p port) bool { return p.n == l.port }) {
			held[l.port] = append(held[l.port], l)
			if l.inode != "0" && strings.Trim(l.inode, "0123456789") == "" && !slices.Contains(inodes, l.inode) {
				inodes = append(inodes, l.inode)
			}
		}
	}
	owners := map[string][]owner{}
	var ownersErr error
	if len(inodes) > 0 {
		// Naming the owners walks /proc/*/fd, slow on a busy host: it gets
		// what is left of the check's time but one second, so that the
		// ports found busy are still reported when it runs out.
		octx := ctx
		if dl, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			octx, cancel = context.WithDeadline(ctx, dl.Add(-time.Second))
			defer cancel()
		}
		out, err := t.Run(octx, ownersScript(inodes), nil)
		if err == nil {
			owners = parseOwners(out)
		} else {
			ownersErr = err
		}
	}
	var free, mine []string
	var fs []finding
	for _, p := range ports {
		ls := held[p.n]
		if len(ls) == 0 {
			free = append(free, strconv.Itoa(p.n))
			continue
		}
		var who []owner
		var addrs []string
		for _, l := range ls {
			who = append(who, owners[l.inode]...)
			if a := l.addr.String(); !slices.Contains(addrs, a) {
				addrs = append(addrs, a)
			}
		}
		if len(who) > 0 && !slices.ContainsFunc(who, func(o owner) bool { return !o.isMailctl() }) {
			mine = append(mine, strconv.Itoa(p.n))
			continue
		}
		var names []string
		var other owner
		for _, o := range who {
			if !o.isMailctl() {
				if other.pid == "" {
					other = o
				}
				names = append(names, o.String())
			}
		}
		by := "a program this user cannot see (run as root to name it)"
		if ownersErr != nil {
			by = "a program that could not be named (" + ownersErr.Error() + ")"
		}
		if len(names) > 0 {
			by = strings.Join(names, ", ")
		}
		fix := fmt.Sprintf("stop the program that listens on port %d, or give mailctl another %s port in a ports { } block", p.n, p.name)
		switch {
		case other.pid == "1":
			fix = fmt.Sprintf("find the socket unit that listens on port %d (systemctl list-sockets) and disable it (systemctl disable --now UNIT.socket), or give mailctl another %s port in a ports { } block", p.n, p.name)
		case other.unit != "" && !strings.HasPrefix(other.unit, "session-") && !strings.HasPrefix(other.unit, "user@"):
			fix = fmt.Sprintf("stop and disable %s on the server (systemctl disable --now %s; apt-get purge its package if mailctl replaces it), or give mailctl another %s port in a ports { } block",
				other.comm, other.unit, p.name)
		case other.pid != "":
			fix = fmt.Sprintf("stop %s (pid %s) on the server, or give mailctl another %s port in a ports { } block", other.comm, other.pid, p.name)
		}
		fs = append(fs, finding{verify.Fail, fmt.Sprintf("port %d (%s) is in use by %s on %s", p.n, p.name, by, strings.Join(addrs, ", ")), fix})
	}
	var ok []string
	if len(mine) > 0 {
		ok = append(ok, "held by mailctl (already deployed): "+strings.Join(mine, ", "))
	}
	if len(free) > 0 {
		ok = append(ok, "free: "+strings.Join(free, ", "))
	}
	r := combine(strings.Join(ok, "; "), fs)
	if r.Status != verify.Pass && len(ok) > 0 {
		r.Detail += "; " + strings.Join(ok, "; ")
	}
	return r
}
