package store

import "errors"

// Dir returns the directory of st, for tests that inspect files.
func Dir(st *Store) string { return st.dir }

// AbortBeforeCommit makes the next deliveries fail right before their index
// commit, as a crash at that point would.
func AbortBeforeCommit(st *Store) {
	st.hook = func(step, path string) error {
		if step == "fsync-dir" {
			return errCrash
		}
		return nil
	}
}

var errCrash = errors.New("simulated crash")
