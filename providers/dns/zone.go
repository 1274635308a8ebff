package dns

import (
	"context"
	"errors"
	"fmt"

	"github.com/libdns/libdns"
)

// SetEdit is the change of one RRset: exactly the records to delete and to
// add, as Provider.Apply takes them.
type SetEdit struct {
	Del, Add []libdns.RR
}

// ZoneApplier is implemented by providers that apply the edits of many
// RRsets of one zone in one call: one rewrite of a zone file with one
// serial bump and one reload, one RFC 2136 UPDATE message. The edits are
// applied in order, each as Apply would; a provider with
// Capabilities.Atomic applies all of them or none. A provider that applies
// them in several steps (Cloudflare's batches of a limited size, OVH's
// record calls) and fails after some edits were applied returns a
// *PartialError saying how many.
type ZoneApplier interface {
	ApplyZone(ctx context.Context, zone string, edits []SetEdit) error
}

// PartialError is the error of a ZoneApplier that applied the first
// Applied edits, each entirely, before Err stopped it; the edits after
// them may be partly applied.
type PartialError struct {
	Applied int
	Err     error
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("%v (the first %d changes of the zone were applied)", e.Err, e.Applied)
}

func (e *PartialError) Unwrap() error { return e.Err }

// Applied returns how many edits err says were applied: PartialError's
// count, 0 for any other error.
func Applied(err error) int {
	if pe, ok := errors.AsType[*PartialError](err); ok {
		return pe.Applied
	}
	return 0
}

// ApplyZone applies edits to zone: in one call when prov is a ZoneApplier,
// else one Apply per edit, in order, stopping at the first error. It
// returns how many edits are known to be applied: all, or those a
// PartialError counts, for a ZoneApplier; the ones before the failed one
// otherwise.
func ApplyZone(ctx context.Context, prov Provider, zone string, edits []SetEdit) (int, error) {
	if za, ok := prov.(ZoneApplier); ok {
		if err := za.ApplyZone(ctx, zone, edits); err != nil {
			return Applied(err), err
		}
		return len(edits), nil
	}
	for i, e := range edits {
		if err := ctx.Err(); err != nil {
			return i, err
		}
		if err := prov.Apply(ctx, zone, e.Del, e.Add); err != nil {
			return i, err
		}
	}
	return len(edits), nil
}
