package cloudflare

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
)

// DefaultBatchLimit is the most operations one batch may hold on a zone of
// the Free plan (Cloudflare's "Batch record changes" documentation: 200 on
// Free, 3,500 on the other plans).
const DefaultBatchLimit = 200

// batchInput is the body of POST /zones/{zone_id}/dns_records/batch.
type batchInput struct {
	Deletes []struct {
		ID string `json:"id"`
	} `json:"deletes"`
	Patches []batchRecord `json:"patches"`
	Puts    []batchRecord `json:"puts"`
	Posts   []input       `json:"posts"`
}

// batchRecord is a patch or a put: a record id and the fields to set.
type batchRecord struct {
	ID string `json:"id"`
	input
}

// SetBatchLimit sets the most operations one batch may hold (0: the Free
// plan's DefaultBatchLimit).
func (s *Server) SetBatchLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batchLimit = n
}

// batch serves POST /zones/{zone_id}/dns_records/batch as Cloudflare
// documents it: the deletes, then the patches, then the puts, then the
// posts, each list in its order, in one transaction: when one operation
// fails, nothing is changed and the answer is the first error. A batch of
// more operations than the zone's plan allows is refused whole.
func (s *Server) batch(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zoneFor(w, r)
	if z == nil {
		return
	}
	var in batchInput
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeErr(w, http.StatusBadRequest, 9207, "Request body is invalid.")
		return
	}
	n := len(in.Deletes) + len(in.Patches) + len(in.Puts) + len(in.Posts)
	limit := s.batchLimit
	if limit <= 0 {
		limit = DefaultBatchLimit
	}
	if n > limit {
		writeErr(w, http.StatusBadRequest, 81063, fmt.Sprintf("The batch holds %d record operations; this zone's plan allows at most %d.", n, limit))
		return
	}
	// The operations change a copy of the records, kept only if all of
	// them succeed. build makes a new Record for each change, so the
	// copy of the pointers is enough.
	tx := &zone{ID: z.ID, Name: z.Name, records: slices.Clone(z.records)}
	type result struct {
		Deletes []Record `json:"deletes"`
		Patches []Record `json:"patches"`
		Puts    []Record `json:"puts"`
		Posts   []Record `json:"posts"`
	}
	res := result{Deletes: []Record{}, Patches: []Record{}, Puts: []Record{}, Posts: []Record{}}
	index := func(id string) int {
		return slices.IndexFunc(tx.records, func(rec *Record) bool { return rec.ID == id })
	}
	fail := func(status, code int, msg string) {
		writeErr(w, status, code, msg)
	}
	for _, d := range in.Deletes {
		i := index(d.ID)
		if i < 0 {
			fail(http.StatusNotFound, 81044, "Record does not exist.")
			return
		}
		res.Deletes = append(res.Deletes, *tx.records[i])
		tx.records = slices.Delete(tx.records, i, i+1)
	}
	update := func(list []batchRecord, put bool, out *[]Record) bool {
		for _, p := range list {
			i := index(p.ID)
			if i < 0 {
				fail(http.StatusNotFound, 81044, "Record does not exist.")
				return false
			}
			base := *tx.records[i]
			if put {
				base = Record{ID: base.ID, CreatedOn: base.CreatedOn, TTL: 1}
			}
			rec, code, msg := s.build(tx, fromInput(p.input, base))
			if code != 0 {
				fail(http.StatusBadRequest, code, msg)
				return false
			}
			tx.records[i] = rec
			*out = append(*out, *rec)
		}
		return true
	}
	if !update(in.Patches, false, &res.Patches) || !update(in.Puts, true, &res.Puts) {
		return
	}
	for _, p := range in.Posts {
		rec, code, msg := s.build(tx, fromInput(p, Record{TTL: 1}))
		if code != 0 {
			fail(http.StatusBadRequest, code, msg)
			return
		}
		tx.records = append(tx.records, rec)
		res.Posts = append(res.Posts, *rec)
	}
	z.records = tx.records
	z.logWrite(r)
	writeOK(w, res, nil)
}
