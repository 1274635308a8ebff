-- Schema 8: the text that SEARCH BODY and TEXT match, kept beside each
-- body (bodysearch.go), so that such a search is answered by the
-- database instead of sending every body of the mailbox to the node.
-- head: the decoded values of the header fields (TEXT), body: the decoded
-- text parts (BODY), each lowered by the IMAP server's rules and joined
-- by U+0001. A body without a row (written before this schema, larger
-- than a chunk, or by a node without an IMAP server) is read and matched
-- by the node, as before. Rows go with their body (the sweeper).
--
-- The texts are stored compressed in the row itself (STORAGE MAIN, rows
-- of up to a page before anything goes out of line): a search reads the
-- mailbox's rows without a TOAST lookup per message; lz4 where the server
-- has it, which decompresses several times faster than pglz.
CREATE TABLE body_texts (
	body_id bigint PRIMARY KEY REFERENCES bodies (id) ON DELETE CASCADE,
	head    text   COLLATE "C" NOT NULL,
	body    text   COLLATE "C" NOT NULL
) WITH (toast_tuple_target = 8160);
ALTER TABLE body_texts ALTER COLUMN head SET STORAGE MAIN, ALTER COLUMN body SET STORAGE MAIN;
DO $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
		ALTER TABLE body_texts ALTER COLUMN head SET COMPRESSION lz4, ALTER COLUMN body SET COMPRESSION lz4;
	END IF;
END $$;
