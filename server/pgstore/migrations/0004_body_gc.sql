-- Schema 4: a body outlives its last message for a grace period (issue 20).
-- A session that opened a body before another session or node expunged
-- its last message reads it to the end, as with the embedded store and
-- Dovecot: the expunge sets refs to 0 and released_at (the database's
-- clock, the same for every node) instead of deleting the body, and a
-- sweeper that any node runs deletes the bodies released longer ago than
-- the grace, their chunks with them (ON DELETE CASCADE). released_at is
-- NULL while a message uses the body.
ALTER TABLE bodies ADD COLUMN released_at timestamptz;
CREATE INDEX bodies_released ON bodies (released_at) WHERE released_at IS NOT NULL;
