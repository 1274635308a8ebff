package davpg

import (
	"context"
	"errors"
	"fmt"

	"github.com/mailctl/mailctl/server/dav"
)

// ImportStats counts what Import did.
type ImportStats struct {
	Users       int // users read from the source
	Collections int // collections created in the database
	Objects     int // objects copied
	// Skipped counts objects left out because the database has an object
	// of the same name in that collection already (kept as it is).
	Skipped int
}

// Import copies a node's calendars and address books (its embedded
// dav.db) into the database: the move of a node that served DAV from its
// data directory onto the shared database. Collections the database lacks
// are made with the source's properties; an object whose name the
// database's collection already holds is skipped (the database wins, the
// source is not changed). Run again, it copies nothing twice; several
// nodes' files imported one after the other merge. Sync tokens start
// afresh: clients resynchronise once (an unknown token is answered as
// RFC 6578 says, and clients then read the collection again).
func (s *Store) Import(ctx context.Context, src *dav.Store) (ImportStats, error) {
	var st ImportStats
	users, err := src.Users(ctx)
	if err != nil {
		return st, fmt.Errorf("import calendars: list users: %w", err)
	}
	for _, user := range users {
		st.Users++
		// The user was seen: no default collections on top of theirs
		// (or in place of those they deleted).
		if _, err := s.pool.Exec(ctx, `INSERT INTO dav_users (name) VALUES ($1) ON CONFLICT DO NOTHING`, user); err != nil {
			return st, fmt.Errorf("import calendars of %s: %w", user, err)
		}
		for _, kind := range []dav.Kind{dav.Calendars, dav.AddressBooks} {
			cols, err := src.Collections(ctx, user, kind)
			if err != nil {
				return st, fmt.Errorf("import calendars of %s: %w", user, err)
			}
			for _, c := range cols {
				switch err := s.CreateCollection(ctx, user, dav.Collection{Kind: kind, Name: c.Name, DisplayName: c.DisplayName, Description: c.Description, Color: c.Color}); {
				case err == nil:
					st.Collections++
				case !errors.Is(err, dav.ErrExists):
					return st, fmt.Errorf("import calendars of %s: %w", user, err)
				}
				objs, err := src.Objects(ctx, user, kind, c.Name)
				if err != nil {
					return st, fmt.Errorf("import calendars of %s: %w", user, err)
				}
				for _, o := range objs {
					_, _, err := s.PutObject(ctx, user, kind, c.Name, o.Name, o.Data, dav.Conditions{IfNoneMatch: "*"})
					switch {
					case err == nil:
						st.Objects++
					case errors.Is(err, dav.ErrPrecondition):
						st.Skipped++
					default:
						return st, fmt.Errorf("import calendars of %s: %w", user, err)
					}
				}
			}
		}
	}
	return st, nil
}
