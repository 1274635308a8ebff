package auth

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestFairQueueRoundRobin: with every slot taken and one address queueing
// 50 requests before a second address queues one, the second is served
// second in turn (after the head of the first), not after the 50.
func TestFairQueueRoundRobin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	q := newFairQueue(2)
	for range 2 {
		if err := q.acquire(ctx, "busy"); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	enqueue := func(key string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := q.acquire(ctx, key); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, key)
			mu.Unlock()
		}()
	}
	served := func(n int) {
		for deadline := time.Now().Add(5 * time.Second); ; {
			mu.Lock()
			got := len(order)
			mu.Unlock()
			if got == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d served, want %d", got, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waiting := func(n int) {
		for deadline := time.Now().Add(5 * time.Second); ; {
			q.mu.Lock()
			got := 0
			for _, ts := range q.queues {
				got += len(ts)
			}
			q.mu.Unlock()
			if got == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d waiting, want %d", got, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	for range 50 {
		enqueue("attacker")
	}
	waiting(50)
	enqueue("friend")
	waiting(51)
	// One grant at a time, so that the order served is the order granted.
	for i := range 51 {
		q.release()
		served(i + 1)
	}
	wg.Wait()
	q.release()
	q.release()
	pos := -1
	for i, k := range order {
		if k == "friend" {
			pos = i
		}
	}
	if pos != 1 {
		t.Errorf("friend served in position %d of %d, want 1", pos, len(order))
	}
	if q.free != 2 || len(q.ring) != 0 || len(q.queues) != 0 {
		t.Errorf("after all: free %d, ring %v, queues %d; want 2 free and nothing queued", q.free, q.ring, len(q.queues))
	}
}

// TestFairQueueCancel: a request given up leaves the queue, and one
// granted as it gives up passes its slot on.
func TestFairQueueCancel(t *testing.T) {
	t.Parallel()
	q := newFairQueue(1)
	if err := q.acquire(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%3)*time.Millisecond)
		if err := q.acquire(ctx, fmt.Sprint("k", i%4)); err == nil {
			t.Fatal("acquired a taken slot")
		}
		cancel()
	}
	q.mu.Lock()
	if len(q.ring) != 0 || len(q.queues) != 0 || q.free != 0 {
		t.Errorf("after cancelled requests: ring %v, %d queues, %d free", q.ring, len(q.queues), q.free)
	}
	q.mu.Unlock()
	q.release()
	if err := q.acquire(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	q.release()
}

// TestDefaultConcurrency: one verification per CPU, 2 to 16, fewer when
// the largest hash's memory times the slots would pass 256 MiB.
func TestDefaultConcurrency(t *testing.T) {
	t.Parallel()
	hash := func(mib uint32) User {
		h := fmt.Sprintf("$argon2id$v=19$m=%d,t=1,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5", mib<<10)
		return User{Address: "a@example.org", PasswordHash: h}
	}
	for _, tc := range []struct {
		users []User
		cpus  int
		want  int
	}{
		{nil, 1, 2},
		{nil, 8, 8},
		{nil, 64, 16},
		{[]User{hash(19)}, 16, 13},
		{[]User{hash(19), hash(64)}, 16, 4},
		{[]User{hash(64)}, 2, 2},
		{[]User{hash(1024)}, 8, 2},
	} {
		if got := defaultConcurrency(tc.users, tc.cpus); got != tc.want {
			t.Errorf("defaultConcurrency(%d users, %d CPUs) = %d, want %d", len(tc.users), tc.cpus, got, tc.want)
		}
	}
}
