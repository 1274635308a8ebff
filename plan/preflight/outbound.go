package preflight

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/verify"
	"github.com/mailctl/mailctl/remote"
)

// blockedFix is the fix of a blocked outbound port 25.
const blockedFix = "your provider blocks outbound port 25: ask support to open it, or use a relay { } smarthost"

// Outbound25Check returns the outbound25 check: from the server t, connect
// to probe (host:port, DefaultProbe when empty) and read its SMTP greeting
// (RFC 5321 section 4.2), within 10 seconds. It runs bash's /dev/tcp on
// the server, which every Debian and Ubuntu has. s, when not nil, gives
// the check's target (the server's hostname), and a failure becomes a
// warning when its relay block sends all mail. It adds to
// verify.Options.Extra.
func Outbound25Check(t remote.Target, s *config.Server, probe string) verify.Check {
	return outbound25Check(t, s, probe, 10*time.Second)
}

func outbound25Check(t remote.Target, s *config.Server, probe string, timeout time.Duration) verify.Check {
	if probe == "" {
		probe = DefaultProbe
	}
	c := verify.Check{Name: CheckOutbound25, Target: probe}
	if s != nil {
		c.Target = s.Hostname
	}
	where := "the server"
	if s != nil && s.Local != nil {
		where = "this machine"
	}
	c.Run = func(ctx context.Context) []verify.Result {
		r := outbound25(ctx, t, where, probe, timeout)
		if r.Status == verify.Fail && r.Fix == blockedFix && s != nil && relaysAll(s) {
			r.Status = verify.Warn
			r.Detail += fmt.Sprintf("; all mail goes through the relay %s, so direct delivery is not needed", s.Relay.Address)
			r.Fix = "nothing to do while the relay sends all mail; ask your provider to open port 25 if you ever want to deliver directly"
		}
		r.Check, r.Target = c.Name, c.Target
		return []verify.Result{r}
	}
	return c
}

// relaysAll reports whether the server sends all mail through its relay.
func relaysAll(s *config.Server) bool {
	return s.Relay != nil && len(s.Relay.Domains) == 0 && len(s.Relay.MXHosts) == 0
}

// outboundScript connects to $1:$2 from the server with bash's /dev/tcp
// and prints the first line the peer sends, under a time limit of $3
// seconds. Exit status: 3 connect failed, 4 closed without a greeting,
// 5 no greeting in time, 124 (timeout) connect did not complete.
const outboundScript = `command -v bash >/dev/null 2>&1 || { echo '@@missing bash'; exit 0; }
command -v timeout >/dev/null 2>&1 || { echo '@@missing timeout'; exit 0; }
exec timeout -k 2 "$3" bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 3
echo @@connected
IFS= read -r -t "$3" line <&3; rc=$?
if [ $rc -gt 128 ]; then exit 5; fi
if [ $rc -ne 0 ] && [ -z "$line" ]; then exit 4; fi
printf "@@greeting %s\n" "$line"
printf "QUIT\r\n" >&3
exit 0' outbound25 "$1" "$2" "$3"`

// outbound25 runs the probe on t and judges its outcome.
func outbound25(ctx context.Context, t remote.Target, where, probe string, timeout time.Duration) verify.Result {
	host, port, err := splitProbe(probe)
	if err != nil {
		return verify.Result{Status: verify.Fail, Detail: err.Error(), Fix: "give -probe as HOST:PORT, e.g. " + DefaultProbe}
	}
	secs := max(1, int(timeout.Round(time.Second)/time.Second))
	cmd := "set -- " + remote.ShellQuote(host) + " " + remote.ShellQuote(port) + " " + strconv.Itoa(secs) + "\n" + outboundScript
	start := time.Now()
	out, err := t.Run(ctx, cmd, nil)
	elapsed := time.Since(start).Round(100 * time.Millisecond)
	var connected bool
	var greeting, missing string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimRight(l, "\r")
		switch {
		case l == "@@connected":
			connected = true
		case strings.HasPrefix(l, "@@greeting "):
			greeting = strings.TrimPrefix(l, "@@greeting ")
		case strings.HasPrefix(l, "@@missing "):
			missing = strings.TrimPrefix(l, "@@missing ")
		}
	}
	if missing != "" {
		return verify.Result{Status: verify.Fail, Detail: missing + " is not installed on the server: the probe needs it",
			Fix: "install it on the server (apt-get install " + missing + ")"}
	}
	status, isExit := remote.ExitStatus(err)
	if err != nil && !isExit {
		return verify.Result{Status: verify.Fail, Detail: "run the probe on the server: " + err.Error(),
			Fix: "check the SSH connection, then check again"}
	}
	var stderr string
	var xe *remote.ExitError
	if errors.As(err, &xe) {
		stderr = stderrText(xe.Stderr)
	}
	from := "from " + where + " to " + probe
	blocked := func(detail string) verify.Result {
		return verify.Result{Status: verify.Fail, Detail: detail, Fix: blockedFix}
	}
	switch {
	case err == nil && strings.HasPrefix(greeting, "220"):
		return verify.Result{Status: verify.Pass, Detail: fmt.Sprintf("%s: %s (%s)", from, shorten(greeting, 120), elapsed)}
	case err == nil:
		return verify.Result{Status: verify.Warn,
			Detail: fmt.Sprintf("%s: connected, but the answer is not an SMTP greeting: %q", from, shorten(greeting, 120)),
			Fix:    "check with your provider whether it intercepts outbound port 25 (a filtering proxy), or run again with -probe pointing at an MX you know"}
	case status == 3 && isResolveError(stderr):
		return verify.Result{Status: verify.Fail, Detail: fmt.Sprintf("%s cannot resolve %s: %s", where, host, stderr),
			Fix: "configure a DNS resolver on the server (/etc/resolv.conf), then check again"}
	case status == 3:
		return blocked(fmt.Sprintf("%s: connection failed: %s", from, orUnknown(stderr)))
	case status == 4:
		return blocked(fmt.Sprintf("%s: connected, but the connection closed without a greeting (a provider's filter?)", from))
	case status == 5 || (status == 124 && connected):
		return blocked(fmt.Sprintf("%s: connected, but no greeting within %ds (a provider's filter?)", from, secs))
	case status == 124 || status == 137 || status == -1:
		return blocked(fmt.Sprintf("%s: no answer within %ds: outbound port %s looks blocked", from, secs, port))
	}
	return verify.Result{Status: verify.Fail, Detail: fmt.Sprintf("%s: the probe failed: %v", from, err),
		Fix: "check that bash and coreutils work on the server, then check again"}
}

func isResolveError(s string) bool {
	for _, m := range []string{"Name or service not known", "name resolution", "No address associated", "not known"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// stderrText joins bash's error lines, without its "outbound25: " and
// "line N: " prefixes and repeated lines.
func stderrText(s string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		l = strings.TrimPrefix(strings.TrimSpace(l), "outbound25: ")
		if strings.HasPrefix(l, "line ") {
			if _, rest, ok := strings.Cut(l, ": "); ok {
				l = rest
			}
		}
		if l != "" && !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}

func orUnknown(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
