package store

import "sync"

// dirSyncer makes renames in a directory durable with as few fsyncs as
// possible: concurrent callers share one fsync of the directory, as long as
// it started after their rename (group commit, like bbolt's Batch for the
// index).
type dirSyncer struct {
	mu      sync.Mutex
	cond    *sync.Cond
	started uint64 // generations of fsync started
	done    uint64 // and finished
	running bool
	err     error // of generation done

	fsync func(dir string) error
}

func newDirSyncer() *dirSyncer {
	d := &dirSyncer{fsync: syncDir}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// sync returns once an fsync of dir that started after the call has
// completed.
func (d *dirSyncer) sync(dir string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	target := d.started + 1
	for d.done < target {
		if d.running {
			d.cond.Wait()
			continue
		}
		d.running = true
		d.started++
		gen := d.started
		d.mu.Unlock()
		err := d.fsync(dir)
		d.mu.Lock()
		d.running = false
		d.done, d.err = gen, err
		d.cond.Broadcast()
	}
	return d.err
}
