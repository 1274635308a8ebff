package testenv

import (
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// StartRbldnsd runs rbldnsd (Debian package rbldnsd) as a child serving
// DNS blocklists (RFC 5782) on a loopback UDP port and returns its address.
// zones maps each zone name to its ip4set data, e.g. "127.0.0.2\n" for a
// list holding only the RFC 5782 test address. rbldnsd stops when the test
// ends.
func StartRbldnsd(t testing.TB, zones map[string]string) string {
	t.Helper()
	if len(zones) == 0 {
		t.Fatal("testenv: rbldnsd needs a zone")
	}
	bin, err := exec.LookPath("rbldnsd")
	if err != nil {
		bin = "/usr/sbin/rbldnsd"
	}
	dir := t.TempDir()
	// rbldnsd drops privileges to its own user, which must read the data.
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	names := slices.Sorted(maps.Keys(zones))
	args := []string{"-n", "-q", "-w", dir}
	for _, z := range names {
		if err := os.WriteFile(filepath.Join(dir, z), []byte(zones[z]), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, z+":ip4set:"+z)
	}
	// Any answer to a query of the first zone says rbldnsd serves.
	probe := new(mdns.Msg)
	probe.SetQuestion(mdns.Fqdn("2.0.0.127."+names[0]), mdns.TypeA)
	client := &mdns.Client{Timeout: 200 * time.Millisecond}
	for range 3 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().(*net.UDPAddr)
		pc.Close()
		cmd := exec.Command(bin, append([]string{"-b", fmt.Sprintf("127.0.0.1/%d", addr.Port)}, args...)...)
		var out syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatalf("run rbldnsd (install the Debian package rbldnsd): %v", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-done })
		for range 50 {
			if _, _, err := client.Exchange(probe, addr.String()); err == nil {
				return addr.String()
			}
			select {
			case <-done:
			case <-time.After(50 * time.Millisecond):
				continue
			}
			break
		}
		cmd.Process.Kill()
		t.Logf("rbldnsd did not answer: %s", out.String())
	}
	t.Fatal("rbldnsd did not start")
	return ""
}
