package store

import (
	"os"
	"sync"
	"syscall"
)

// dirSyncer makes new names in a directory durable with as few fsyncs as
// possible: concurrent callers share one fsync of the directory, as long as
// it started after their file was created (group commit, as group.go does
// for the index).
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

// openFile is os.OpenFile for message files, without the three system
// calls (fcntl, epoll_ctl, fcntl) with which os.OpenFile tries, and fails,
// to register a regular file with the network poller: message files are
// opened once per delivery and once per FETCH of a body.
func openFile(path string, flag int, perm uint32) (*os.File, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, flag|syscall.O_CLOEXEC, perm)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}
