package preflight

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/verify"
	"github.com/mailctl/mailctl/remote"
)

// Thresholds of the memory and disk checks.
const (
	MemoryWarn = 256 << 20
	MemoryFail = 128 << 20
	DiskWarn   = 2 << 30
	DiskFail   = 512 << 20
)

// osScript prints os-release, the machine architecture and systemd's
// version and state, separated by marker lines.
const osScript = `cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
echo '@@arch'; uname -m
echo '@@systemd'; systemctl --version 2>/dev/null | head -n 1
echo '@@init'; if [ -d /run/systemd/system ]; then echo booted; fi`

// sections splits osScript's output at its "@@name" lines.
func sections(out []byte) map[string]string {
	m := map[string]string{}
	cur := "os-release"
	var b strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "@@") {
			m[cur] = strings.TrimSpace(b.String())
			b.Reset()
			cur = strings.TrimPrefix(l, "@@")
			continue
		}
		b.WriteString(l + "\n")
	}
	m[cur] = strings.TrimSpace(b.String())
	return m
}

// parseOSRelease reads os-release(5) KEY=value lines.
func parseOSRelease(s string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		} else {
			v = strings.Trim(v, `'"`)
		}
		m[k] = v
	}
	return m
}

// supportedOS reports whether mailctl supports the release: Debian 12 and
// later, Ubuntu LTS 22.04 and later.
func supportedOS(id, version string) bool {
	major, minor, _ := strings.Cut(version, ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return false
	}
	switch id {
	case "debian":
		return n >= 12
	case "ubuntu":
		return n >= 22 && n%2 == 0 && minor == "04"
	}
	return false
}

// goArch maps uname -m to GOARCH.
func goArch(machine string) string {
	switch machine {
	case "x86_64", "amd64":
		return "amd64"
	case "aarch64", "arm64":
		return "arm64"
	case "i386", "i686":
		return "386"
	case "armv7l", "armv6l":
		return "arm"
	}
	return machine
}

// checkOS checks the release, the architecture and systemd.
func checkOS(ctx context.Context, t remote.Target, s *config.Server) verify.Result {
	out, err := t.Run(ctx, osScript, nil)
	if err != nil {
		return verify.Result{Status: verify.Fail, Detail: "read the OS release: " + err.Error(),
			Fix: "check that the server runs a Linux with /etc/os-release, then run mailctl preflight again"}
	}
	sec := sections(out)
	rel := parseOSRelease(sec["os-release"])
	name := rel["PRETTY_NAME"]
	if name == "" {
		name = strings.TrimSpace(rel["NAME"] + " " + rel["VERSION_ID"])
	}
	if name == "" {
		name = "unknown OS (no /etc/os-release)"
	}
	arch := strings.TrimSpace(sec["arch"])
	systemd := strings.TrimSpace(sec["systemd"])
	booted := strings.TrimSpace(sec["init"]) == "booted"
	local := s.Local != nil

	var fs []finding
	if !local && !supportedOS(rel["ID"], rel["VERSION_ID"]) {
		fs = append(fs, finding{verify.Warn, name + " is not a release mailctl is tested on",
			"prefer Debian 12 or 13, or Ubuntu 22.04 or 24.04 LTS, when you order or reinstall the server"})
	}
	if arch != "" && goArch(arch) != runtime.GOARCH {
		fs = append(fs, finding{verify.Warn, fmt.Sprintf("the server is %s while this mailctl is built for %s", arch, runtime.GOARCH),
			fmt.Sprintf("deploy with -server-binary, a mailctl built with GOOS=linux GOARCH=%s", goArch(arch))})
	}
	if !local {
		switch {
		case systemd == "":
			fs = append(fs, finding{verify.Fail, "no systemd (systemctl --version failed): mailctl runs the server as a systemd unit",
				"use a Debian or Ubuntu image with systemd (not a container without an init system)"})
		case !booted:
			fs = append(fs, finding{verify.Fail, systemd + " is installed but does not run as init (no /run/systemd/system)",
				"use a VPS (KVM) image booted with systemd, not a container without an init system"})
		}
	}
	desc := name
	if arch != "" {
		desc += ", " + arch
	}
	switch {
	case systemd != "" && booted:
		desc += ", " + strings.Fields(systemd)[0] + " " + fieldOr(systemd, 1) + " running"
	case local:
		desc += " (a local target needs no systemd)"
	}
	r := combine(desc, fs)
	if r.Status != verify.Pass {
		r.Detail = desc + ": " + r.Detail
	}
	return r
}

func fieldOr(s string, i int) string {
	f := strings.Fields(s)
	if i < len(f) {
		return f[i]
	}
	return ""
}

// parseMeminfo returns MemAvailable and MemTotal of /proc/meminfo in
// bytes.
func parseMeminfo(b []byte) (avail, total int64, err error) {
	avail, total = -1, -1
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		n, perr := strconv.ParseInt(f[1], 10, 64)
		if perr != nil {
			continue
		}
		if len(f) >= 3 && f[2] == "kB" {
			n <<= 10
		}
		switch f[0] {
		case "MemAvailable:":
			avail = n
		case "MemTotal:":
			total = n
		}
	}
	if avail < 0 {
		return 0, 0, fmt.Errorf("no MemAvailable in /proc/meminfo (Linux 3.14 or later has it)")
	}
	return avail, total, nil
}

// checkMemory checks the memory available to a new service.
func checkMemory(ctx context.Context, t remote.Target) verify.Result {
	out, err := t.Run(ctx, "cat /proc/meminfo", nil)
	if err != nil {
		return verify.Result{Status: verify.Fail, Detail: "read /proc/meminfo: " + err.Error(),
			Fix: "check that the server runs Linux, then run mailctl preflight again"}
	}
	avail, total, err := parseMeminfo(out)
	if err != nil {
		return verify.Result{Status: verify.Fail, Detail: err.Error(), Fix: "use a server with a current Linux kernel"}
	}
	detail := bytesIEC(avail) + " available"
	if total > 0 {
		detail += " of " + bytesIEC(total)
	}
	switch {
	case avail < MemoryFail:
		return verify.Result{Status: verify.Fail, Detail: detail + fmt.Sprintf(" (mailctl needs at least %s)", bytesIEC(MemoryFail)),
			Fix: "stop what uses the memory, or take a plan with at least 512 MiB of RAM"}
	case avail < MemoryWarn:
		return verify.Result{Status: verify.Warn, Detail: detail + fmt.Sprintf(" (less than %s: large messages and IMAP searches may be slow)", bytesIEC(MemoryWarn)),
			Fix: "stop what uses the memory, or take a plan with 1 GiB of RAM"}
	}
	return verify.Result{Status: verify.Pass, Detail: detail}
}

// dfEntry is one line of df -Pk.
type dfEntry struct {
	fs, mount string
	avail     int64 // bytes
}

// parseDF reads df -P output (1024-byte blocks), one entry per
// filesystem.
func parseDF(b []byte) ([]dfEntry, error) {
	var out []dfEntry
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		if i == 0 && len(f) > 0 && f[0] == "Filesystem" {
			continue
		}
		if len(f) < 6 {
			continue
		}
		n, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("df: bad line %q", l)
		}
		e := dfEntry{fs: f[0], mount: strings.Join(f[5:], " "), avail: n << 10}
		if !slices.ContainsFunc(out, func(o dfEntry) bool { return o.mount == e.mount }) {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("df printed no filesystem")
	}
	return out, nil
}

// checkDisk checks the free space of / (releases under /opt) and /var
// (mail under /var/lib/mailctl).
func checkDisk(ctx context.Context, t remote.Target) verify.Result {
	out, err := t.Run(ctx, "df -Pk / /var", nil)
	if err != nil {
		return verify.Result{Status: verify.Fail, Detail: "df -Pk / /var: " + err.Error(),
			Fix: "check that df (coreutils) works on the server, then run mailctl preflight again"}
	}
	fss, err := parseDF(out)
	if err != nil {
		return verify.Result{Status: verify.Fail, Detail: err.Error(), Fix: "check that df (coreutils) works on the server"}
	}
	var parts []string
	worst := verify.Pass
	low := ""
	for _, e := range fss {
		parts = append(parts, fmt.Sprintf("%s %s free", e.mount, bytesIEC(e.avail)))
		st := verify.Pass
		switch {
		case e.avail < DiskFail:
			st = verify.Fail
		case e.avail < DiskWarn:
			st = verify.Warn
		}
		if st > worst {
			worst, low = st, e.mount
		}
	}
	r := verify.Result{Status: worst, Detail: strings.Join(parts, ", ")}
	switch worst {
	case verify.Fail:
		r.Detail += fmt.Sprintf(" (mailctl needs at least %s on %s for its releases and the mail)", bytesIEC(DiskFail), low)
		r.Fix = "free space on " + low + " (apt-get clean, journalctl --vacuum-size=100M) or take a larger disk"
	case verify.Warn:
		r.Detail += fmt.Sprintf(" (less than %s on %s: mailboxes fill it quickly)", bytesIEC(DiskWarn), low)
		r.Fix = "free space on " + low + " (apt-get clean, journalctl --vacuum-size=100M) or take a larger disk"
	}
	return r
}

// bytesIEC prints n in MiB or GiB.
func bytesIEC(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// finding is one problem found by a check.
type finding struct {
	status      verify.Status
	detail, fix string
}

// combine turns findings into one result: the worst status, every detail,
// the fix of the first worst finding; with no finding it passes with ok.
func combine(ok string, fs []finding) verify.Result {
	if len(fs) == 0 {
		return verify.Result{Status: verify.Pass, Detail: ok}
	}
	worst := fs[0]
	var details []string
	for _, f := range fs {
		if f.status > worst.status {
			worst = f
		}
		details = append(details, f.detail)
	}
	return verify.Result{Status: worst.status, Detail: strings.Join(details, "; "), Fix: worst.fix}
}
