package imap

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
)

// TestScanSlots: no more scans than slots hold one at once, every one
// gets its turn, and a scan whose connection goes away stops waiting.
func TestScanSlots(t *testing.T) {
	scans := make(chan struct{}, 2)
	var running, most atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sl := scanSlot{scans: scans}
			defer sl.release()
			for range 20 {
				sl.release()
				if err := sl.acquire(context.Background()); err != nil {
					t.Error(err)
					return
				}
				n := running.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(100 * time.Microsecond)
				running.Add(-1)
			}
		}()
	}
	wg.Wait()
	if m := most.Load(); m > 2 {
		t.Errorf("%d scans at once, 2 slots", m)
	}
	if len(scans) != 0 {
		t.Errorf("%d slots still held", len(scans))
	}

	scans <- struct{}{}
	scans <- struct{}{}
	ctx, cancel := context.WithCancel(context.Background())
	sl := scanSlot{scans: scans}
	done := make(chan error)
	go func() { done <- sl.acquire(ctx) }()
	cancel()
	if err := <-done; err == nil {
		t.Error("acquire with every slot taken and the context cancelled: no error")
	}
	sl.release()
	if len(scans) != 2 {
		t.Errorf("a cancelled acquire changed the slots: %d held, want 2", len(scans))
	}
}

func TestReadsBodies(t *testing.T) {
	for _, tc := range []struct {
		c    goimap.SearchCriteria
		want bool
	}{
		{goimap.SearchCriteria{NotFlag: []goimap.Flag{goimap.FlagSeen}}, false},
		{goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "Subject", Value: "x"}}}, false},
		{goimap.SearchCriteria{Body: []string{"x"}}, true},
		{goimap.SearchCriteria{Text: []string{"x"}}, true},
		{goimap.SearchCriteria{Not: []goimap.SearchCriteria{{Body: []string{"x"}}}}, true},
		{goimap.SearchCriteria{Or: [][2]goimap.SearchCriteria{{{}, {Text: []string{"x"}}}}}, true},
	} {
		if got := readsBodies(&tc.c); got != tc.want {
			t.Errorf("readsBodies(%+v) = %v", tc.c, got)
		}
	}
}
