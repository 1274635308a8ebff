package cloudflare

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/providers/dns"
)

// BatchLimit is the most record operations sent in one batch: the limit of
// a zone on the Free plan (Cloudflare's "Batch record changes"
// documentation: 200 on Free, 3,500 on the other plans), so that a batch
// is never refused for its size whatever the plan.
const BatchLimit = 200

var _ dns.ZoneApplier = (*Provider)(nil)

// batchID names a record of a batch's deletes.
type batchID struct {
	ID string `json:"id"`
}

// batch is the body of POST /zones/{zone_id}/dns_records/batch. Cloudflare
// runs its deletes, then its patches, then its posts (puts are not used),
// each list in order, in one database transaction: one failing operation
// fails the whole batch and changes nothing.
type batch struct {
	Deletes []batchID        `json:"deletes,omitempty"`
	Patches []map[string]any `json:"patches,omitempty"`
	Posts   []map[string]any `json:"posts,omitempty"`

	// What the read-back after a lost answer looks for (not sent).
	deleted []string
	posted  []libdns.RR
}

func (b *batch) size() int { return len(b.Deletes) + len(b.Patches) + len(b.Posts) }

func (b *batch) add(o *batch) {
	b.Deletes = append(b.Deletes, o.Deletes...)
	b.Patches = append(b.Patches, o.Patches...)
	b.Posts = append(b.Posts, o.Posts...)
	b.deleted = append(b.deleted, o.deleted...)
	b.posted = append(b.posted, o.posted...)
}

// ApplyZone applies the edits of several RRsets of zone in batches of at
// most BatchLimit operations (POST /zones/{zone_id}/dns_records/batch):
// one request for a new domain's records, or for the changes of a zone of
// up to 200 records. The records to delete are found in one listing of
// the zone. As in Apply, a record of del is changed in place (patched)
// into one of the records added where it can be, so that deletes only
// remove records left over; an edit's operations are never split between
// two batches unless it alone holds more than BatchLimit. Cloudflare runs
// a batch in one transaction, but its name servers may see the records of
// one batch change one by one ("the propagation of changes is not
// atomic").
//
// When a batch fails, nothing of it is applied: the error is a
// *dns.PartialError counting the edits of the batches before it, or the
// API's error itself for the first batch. An edit whose added records
// have no API form known here (types mailctl does not make) is applied
// alone with Apply, in its turn.
func (p *Provider) ApplyZone(ctx context.Context, zone string, edits []dns.SetEdit) error {
	zone = strings.ToLower(strings.TrimSuffix(zone, "."))
	type planned struct {
		sets []dns.RRset
		ops  *batch // nil: applied with Apply
	}
	plans := make([]planned, len(edits))
	needList := false
	for i, e := range edits {
		sets, err := dns.GroupRRsets(zone, e.Del, e.Add, func(c libdns.RR) (libdns.RR, error) {
			if c.TTL > 0 && c.TTL < 60*time.Second {
				c.TTL = 60 * time.Second
			}
			return c, nil
		})
		if err != nil {
			return err
		}
		plans[i].sets = sets
		for _, set := range sets {
			needList = needList || len(set.Del) > 0
		}
	}
	if len(edits) == 0 {
		return nil
	}
	id, err := p.zoneID(ctx, zone)
	if err != nil {
		return err
	}
	// The zone's records by name and type, for the ids of those to delete.
	type nameType struct{ name, typ string }
	stored := map[nameType][]record{}
	if needList {
		recs, err := p.list(ctx, fmt.Sprintf("list records of zone %q", zone), id, nil)
		if err != nil {
			return err
		}
		for _, r := range recs {
			c := toRR(r, zone)
			k := nameType{c.Name, c.Type}
			stored[k] = append(stored[k], r)
		}
	}
	asRR := func(r record) libdns.RR { return toRR(r, zone) }
	patchable := func(_ record, a libdns.RR) bool {
		_, ok := recordBody(a, zone)
		return ok
	}
	for i := range plans {
		b := &batch{}
		ok := true
		for _, set := range plans[i].sets {
			keys := map[dns.Key]bool{}
			for _, c := range set.Del {
				keys[dns.KeyOf(c)] = true
			}
			var old []record
			for _, r := range stored[nameType{set.Name, set.Type}] {
				if keys[dns.KeyOf(toRR(r, zone))] {
					old = append(old, r)
				}
			}
			e := dns.PairEdits(old, set.Add, asRR, patchable)
			for _, k := range e.Keep {
				if ttl := apiTTL(k.New.TTL); ttl != k.Old.TTL {
					b.Patches = append(b.Patches, map[string]any{"id": k.Old.ID, "ttl": ttl})
				}
			}
			for _, c := range e.Change {
				body, _ := recordBody(c.New, zone)
				body["id"] = c.Old.ID
				b.Patches = append(b.Patches, body)
			}
			for _, c := range e.Create {
				body, known := recordBody(c, zone)
				if !known {
					ok = false
					break
				}
				b.Posts = append(b.Posts, body)
				b.posted = append(b.posted, c)
			}
			for _, r := range e.Delete {
				b.Deletes = append(b.Deletes, batchID{r.ID})
				b.deleted = append(b.deleted, r.ID)
			}
		}
		if ok {
			plans[i].ops = b
		}
	}

	// Send the edits in order: as many whole edits per batch as fit.
	applied := 0 // edits known applied
	pending := &batch{}
	inPending := 0
	flush := func() error {
		if pending.size() > 0 {
			if err := p.sendBatch(ctx, zone, id, pending); err != nil {
				return err
			}
		}
		applied += inPending
		pending, inPending = &batch{}, 0
		return nil
	}
	fail := func(err error) error {
		if applied == 0 {
			return err
		}
		return &dns.PartialError{Applied: applied, Err: err}
	}
	for i, pl := range plans {
		switch {
		case pl.ops == nil:
			if err := flush(); err != nil {
				return fail(err)
			}
			if err := p.Apply(ctx, zone, edits[i].Del, edits[i].Add); err != nil {
				return fail(err)
			}
			applied++
		case pl.ops.size() > BatchLimit:
			// Too big for one batch: its changes in place, then its
			// creations, then its deletions, as Apply orders them.
			if err := flush(); err != nil {
				return fail(err)
			}
			for _, part := range split(pl.ops) {
				if err := p.sendBatch(ctx, zone, id, part); err != nil {
					return fail(err)
				}
			}
			applied++
		default:
			if pending.size()+pl.ops.size() > BatchLimit {
				if err := flush(); err != nil {
					return fail(err)
				}
			}
			pending.add(pl.ops)
			inPending++
		}
	}
	if err := flush(); err != nil {
		return fail(err)
	}
	p.log.DebugContext(ctx, "cloudflare zone apply", "zone", zone, "edits", len(edits))
	return nil
}

// split cuts an edit's operations bigger than BatchLimit into batches of
// at most BatchLimit: the patches, then the posts, then the deletes.
func split(b *batch) []*batch {
	var out []*batch
	for from := 0; from < len(b.Patches); from += BatchLimit {
		out = append(out, &batch{Patches: b.Patches[from:min(from+BatchLimit, len(b.Patches))]})
	}
	for from := 0; from < len(b.Posts); from += BatchLimit {
		to := min(from+BatchLimit, len(b.Posts))
		out = append(out, &batch{Posts: b.Posts[from:to], posted: b.posted[from:to]})
	}
	for from := 0; from < len(b.Deletes); from += BatchLimit {
		to := min(from+BatchLimit, len(b.Deletes))
		out = append(out, &batch{Deletes: b.Deletes[from:to], deleted: b.deleted[from:to]})
	}
	return out
}

// sendBatch sends one batch to the zone zoneID. A batch of patches alone
// sets absolute values and may be sent again; one that deletes or creates
// is not sent again before the zone is read back when its answer is lost:
// it was applied when none of its deleted records and all of its created
// ones are there (a batch is all or nothing).
func (p *Provider) sendBatch(ctx context.Context, zone, zoneID string, b *batch) error {
	op := fmt.Sprintf("apply %d record changes to zone %q in one batch", b.size(), zone)
	send := func(ctx context.Context) error {
		_, err := p.do(ctx, op, http.MethodPost, "/zones/"+zoneID+"/dns_records/batch", nil, b)
		return err
	}
	if len(b.Deletes) == 0 && len(b.Posts) == 0 {
		return send(dns.Idempotent(ctx))
	}
	applied := func(ctx context.Context) (bool, error) {
		recs, err := p.list(ctx, fmt.Sprintf("read back zone %q after a batch", zone), zoneID, nil)
		if err != nil {
			return false, err
		}
		ids := map[string]bool{}
		keys := map[dns.Key]bool{}
		for _, r := range recs {
			ids[r.ID] = true
			keys[dns.KeyOf(toRR(r, zone))] = true
		}
		for _, id := range b.deleted {
			if ids[id] {
				return false, nil
			}
		}
		for _, c := range b.posted {
			if !keys[dns.KeyOf(c)] {
				return false, nil
			}
		}
		return true, nil
	}
	if err := dns.CreateOnce(ctx, send, applied); err != nil {
		return fmt.Errorf("cloudflare: %w", err)
	}
	return nil
}
