-- Schema 5: room on each page of messages for a new version of its rows.
-- A STORE rewrites the flags and MODSEQ of every message it changes;
-- neither is indexed, so with free space on the page PostgreSQL keeps the
-- new version there (a HOT update) instead of writing it elsewhere and
-- adding entries to every index. Pages written before this migration
-- fill up as before until they are rewritten (VACUUM FULL, or a copy).
ALTER TABLE messages SET (fillfactor = 80);
