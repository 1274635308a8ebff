// Package emulator holds what the local emulators of hosting APIs share:
// per-endpoint call counters and injected failures. The emulators
// themselves (subpackages cloudflare, ovh) are stateful httptest servers that
// follow the published APIs closely enough for the real client libraries, so
// that tests of the whole project run against them without network access.
package emulator

import (
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
)

// Fault is an injected failure: the next Count calls (matching Pattern, or
// any call when Pattern is empty) are answered with Status and Body instead
// of being served.
type Fault struct {
	// Pattern is a ServeMux pattern as registered ("GET /zones"); empty
	// matches every call.
	Pattern string
	Status  int
	// Body is written as is; empty means the emulator's error body for
	// Status.
	Body string
	// RetryAfter, if set, is sent as the Retry-After header.
	RetryAfter string
	Count      int
	// LoseAnswer serves the call (its change is made) and then loses the
	// answer: it is replaced by Status, or the connection is closed
	// without an answer when Status is 0.
	LoseAnswer bool
	// Hang holds the call without an answer until the client goes away.
	Hang bool
	// Skip lets the first Skip matching calls through before the fault
	// applies (the second zone's batch hangs, the first one's is served).
	Skip int
}

// Recorder counts calls per endpoint and serves injected faults. The zero
// value is ready to use; it is safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	calls  map[string]int
	faults []Fault
}

// Inject queues a fault.
func (r *Recorder) Inject(f Fault) {
	if f.Count <= 0 {
		f.Count = 1
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = append(r.faults, f)
}

// FailNext makes the next n calls (any endpoint) answer status.
func (r *Recorder) FailNext(n, status int) {
	r.Inject(Fault{Status: status, Count: n})
}

// ClearFaults drops every queued fault.
func (r *Recorder) ClearFaults() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = nil
}

// Calls returns the number of calls per endpoint pattern
// ("GET /zones/{zone}/dns_records"), faulted calls included.
func (r *Recorder) Calls() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.calls)
}

// Count returns the calls to one pattern.
func (r *Recorder) Count(pattern string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[pattern]
}

// Total returns the number of calls to every endpoint.
func (r *Recorder) Total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		n += c
	}
	return n
}

// ResetCalls sets every counter to zero.
func (r *Recorder) ResetCalls() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = nil
}

// record counts a call to pattern and returns the fault to serve, if any.
func (r *Recorder) record(pattern string) (Fault, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[pattern]++
	for i := range r.faults {
		f := &r.faults[i]
		if f.Pattern != "" && f.Pattern != pattern {
			continue
		}
		if f.Skip > 0 {
			f.Skip--
			return Fault{}, false
		}
		out := *f
		f.Count--
		if f.Count == 0 {
			r.faults = append(r.faults[:i], r.faults[i+1:]...)
		}
		return out, true
	}
	return Fault{}, false
}

// Wrap returns h counting its calls under the mux pattern that matched and
// serving queued faults; errorBody renders the emulator's error body for a
// status when the fault has none.
func (r *Recorder) Wrap(h http.Handler, errorBody func(status int) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		f, ok := r.record(req.Pattern)
		if !ok {
			h.ServeHTTP(w, req)
			return
		}
		if f.Hang {
			// The body read to its end, the server notices the client
			// going away (and cancels the request's context).
			io.Copy(io.Discard, req.Body)
			<-req.Context().Done()
			return
		}
		if f.LoseAnswer {
			h.ServeHTTP(httptest.NewRecorder(), req)
			if f.Status == 0 {
				if hj, ok := w.(http.Hijacker); ok {
					if conn, _, err := hj.Hijack(); err == nil {
						conn.Close()
						return
					}
				}
				panic(http.ErrAbortHandler)
			}
		}
		body := f.Body
		if body == "" && errorBody != nil {
			body = errorBody(f.Status)
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.Status)
		w.Write([]byte(body))
	})
}

// Write is one API call that changed a zone's records, with the zone's
// records right after it: tests check every intermediate state (an RRset
// never empty during an update).
type Write[R any] struct {
	// Call is the method and path, e.g. "PATCH /client/v4/zones/ID/dns_records/ID".
	Call    string
	Records []R
}

// NewWrite returns the Write of call r, copying records.
func NewWrite[R any](r *http.Request, records []*R) Write[R] {
	w := Write[R]{Call: r.Method + " " + r.URL.Path, Records: make([]R, 0, len(records))}
	for _, rec := range records {
		w.Records = append(w.Records, *rec)
	}
	return w
}
