package dns

import (
	"context"

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
// Capabilities.Atomic applies all of them or none.
type ZoneApplier interface {
	ApplyZone(ctx context.Context, zone string, edits []SetEdit) error
}

// ApplyZone applies edits to zone: in one call when prov is a ZoneApplier,
// else one Apply per edit, in order, stopping at the first error. It
// returns how many edits are known to be applied: all or none for a
// ZoneApplier, the ones before the failed one otherwise.
func ApplyZone(ctx context.Context, prov Provider, zone string, edits []SetEdit) (int, error) {
	if za, ok := prov.(ZoneApplier); ok {
		if err := za.ApplyZone(ctx, zone, edits); err != nil {
			return 0, err
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
