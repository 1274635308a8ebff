// Package e2e holds the end-to-end tests that need a real Debian server: a
// QEMU virtual machine with systemd and OpenSSH booted once per test
// process by scripts/vps/start.sh (see internal/testenv/vps.go) and
// shared by every test of the package. Under TCG emulation the boot takes
// about 25 s and every remote step is slow: tests use generous timeouts,
// scaled by how much slower than that the VM booted (vmContext), and one
// SSH connection each.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
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
		// The image first, with a deadline of its own (scripts/test builds
		// it before the tests; go test alone may meet a cache miss).
		bctx, bcancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer bcancel()
		if vmErr = testenv.BuildVPSImage(bctx, prefixWriter{os.Stderr, "e2e: "}); vmErr != nil {
			return
		}
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

// prefixWriter writes each Write to w after prefix.
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// dialVPS opens an SSH connection to the VM as root, pinning its host key.
func dialVPS(t testing.TB) *remote.SSH {
	t.Helper()
	v := sharedVPS(t)
	ctx, cancel := vmContext(t, 60*time.Second)
	defer cancel()
	c, err := remote.DialSSH(ctx, remote.SSHConfig{Address: v.Addr, Identity: v.KeyFile, HostKey: v.HostKey, Timeout: vmTimeout(60 * time.Second)})
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

// quietBoot is the VM's boot-to-SSH time under TCG on a quiet machine of
// this project's kind (21.8-25.2 s measured): the deadlines written in
// these tests hold on such a machine.
const quietBoot = 25 * time.Second

// loadFactor is how many times slower than quietBoot the shared VM booted
// (at least 1): on a loaded machine every remote step slows down alike.
func loadFactor() float64 {
	if vm == nil || vm.BootSeconds <= 0 {
		return 1
	}
	return max(1, vm.BootSeconds/quietBoot.Seconds())
}

// vmTimeout scales a deadline that holds on a quiet machine by loadFactor.
func vmTimeout(d time.Duration) time.Duration {
	return time.Duration(float64(d) * loadFactor())
}

// vmContext is context.WithTimeout with the deadline scaled by loadFactor.
// When the deadline passes, the test also fails with a message saying so
// and how loaded the machine was, so that a timeout under load is told
// apart from a hang.
func vmContext(t testing.TB, d time.Duration) (context.Context, context.CancelFunc) {
	t.Helper()
	scaled := vmTimeout(d)
	ctx, cancel := context.WithTimeout(context.Background(), scaled)
	t.Cleanup(func() {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Errorf("timed out after %s (%s on a quiet machine, x%.1f because the VM booted in %.0f s against %.0f s quiet): the machine was loaded or a step hung",
				scaled.Round(time.Second), d, loadFactor(), vm.BootSeconds, quietBoot.Seconds())
		}
	})
	return ctx, cancel
}
