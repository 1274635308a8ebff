package testenv

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestChild(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		ready   bool
		wantErr string
	}{
		{"ready", []string{"60"}, true, ""},
		{"exits first", []string{"not-a-duration"}, false, "exited: exit status 1"},
		{"never ready", []string{"60"}, false, errNotReady.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out syncBuffer
			c, err := startChild(&out, "sleep", tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.stop)
			err = c.waitReady(300*time.Millisecond, func() bool { return tc.ready })
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("waitReady = %v", err)
				}
				c.stop()
				if !strings.Contains(c.err.Error(), "terminated") {
					t.Errorf("after stop: %v, want killed by SIGTERM", c.err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("waitReady = %v, want %q (output %q)", err, tc.wantErr, out.String())
			}
			if errors.Is(err, errNotReady) {
				select {
				case <-c.exited:
				default:
					t.Error("the child runs on after waitReady gave up")
				}
			}
		})
	}
}
