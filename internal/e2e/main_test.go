// Package e2e holds the end-to-end tests that need a real Debian server: a
// QEMU virtual machine with systemd and OpenSSH booted once per test
// process by ../shared/vps/start.sh (see internal/testenv/vps.go) and
// shared by every test of the package. Under TCG emulation the boot takes
// about 25 s and every remote step is slow: tests use generous timeouts
// and one SSH connection each.
package e2e

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/remote"
)

var (
	vmOnce sync.Once
	vm     *testenv.VPS
	vmErr  error
)

// sharedVPS returns the VM of this test process, booting it on first use.
// Tests must leave it as they found it (Destroy what they deploy).
func sharedVPS(t testing.TB) *testenv.VPS {
	t.Helper()
	vmOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		vm, vmErr = testenv.StartVPS(ctx)
		if vmErr == nil {
			fmt.Fprintf(os.Stderr, "e2e: VM up (%s): boot-to-SSH %.1fs, start.sh %.1fs\n", vm.Accel, vm.BootSeconds, vm.Elapsed.Seconds())
		}
	})
	if vmErr != nil {
		t.Fatalf("boot the test VM: %v", vmErr)
	}
	return vm
}

// dialVPS opens an SSH connection to the VM as root, pinning its host key.
func dialVPS(t testing.TB) *remote.SSH {
	t.Helper()
	v := sharedVPS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := remote.DialSSH(ctx, remote.SSHConfig{Address: v.Addr, Identity: v.KeyFile, HostKey: v.HostKey, Timeout: 60 * time.Second})
	if err != nil {
		t.Fatalf("ssh to the test VM: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMain(m *testing.M) {
	code := m.Run()
	if vm != nil {
		if err := vm.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.Exit(code)
}
