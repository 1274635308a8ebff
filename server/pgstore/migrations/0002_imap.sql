-- Schema 2: what IMAP needs beyond schema 1 (issue 20).

-- Bodies, shared by the copies of a message (Copy), in chunks so that
-- neither a write nor a read holds a whole large body in memory. A body
-- holds the message header captured at delivery and the summary made of
-- it (FETCH ENVELOPE without reading the body); refs counts the messages
-- that use it, and the body goes with its last message.
CREATE TABLE bodies (
	id         bigserial PRIMARY KEY,
	size       bigint    NOT NULL,
	chunk_size integer   NOT NULL,  -- bytes per chunk (the last may be shorter)
	refs       integer   NOT NULL,
	header     bytea,               -- NULL: not cached (too long, or from schema 1)
	summary    bytea                -- NULL: none made
);

CREATE TABLE body_chunks (
	body_id  bigint  NOT NULL REFERENCES bodies (id) ON DELETE CASCADE,
	chunk_no integer NOT NULL,
	data     bytea   NOT NULL,
	PRIMARY KEY (body_id, chunk_no)
);

-- id is the message row, stable across a MOVE (store.Message.Ref).
ALTER TABLE messages ADD COLUMN id bigserial UNIQUE;
ALTER TABLE messages ADD COLUMN body_id bigint;

-- The bodies of schema 1, one chunk of at most 1 MiB per row.
UPDATE messages m SET body_id = nextval('bodies_id_seq')
	FROM message_bodies b WHERE b.mailbox_id = m.mailbox_id AND b.uid = m.uid;
INSERT INTO bodies (id, size, chunk_size, refs)
	SELECT m.body_id, octet_length(b.body), 1048576, 1
	FROM messages m JOIN message_bodies b USING (mailbox_id, uid);
INSERT INTO body_chunks (body_id, chunk_no, data)
	SELECT m.body_id, g.n, substring(b.body FROM g.n * 1048576 + 1 FOR 1048576)
	FROM messages m JOIN message_bodies b USING (mailbox_id, uid),
		generate_series(0, (octet_length(b.body) - 1) / 1048576) AS g (n)
	WHERE octet_length(b.body) > 0;
DROP TABLE message_bodies;
ALTER TABLE messages ALTER COLUMN body_id SET NOT NULL;
ALTER TABLE messages ADD FOREIGN KEY (body_id) REFERENCES bodies (id);
CREATE INDEX messages_body_id ON messages (body_id);

-- \Recent (RFC 3501): messages from recent_uid on are for the next
-- session that claims them.
ALTER TABLE mailboxes ADD COLUMN recent_uid bigint NOT NULL DEFAULT 1;

-- The change feed's catch-up: the id of the last transaction that
-- changed the mailbox (pg_current_xact_id), compared after a lost LISTEN
-- connection with the oldest transaction running when it was set up.
ALTER TABLE mailboxes ADD COLUMN change_xid bigint NOT NULL DEFAULT 0;

-- UIDs that left a mailbox (Expunge, Move) for QRESYNC (RFC 7162), as
-- ranges [lo, hi] under the MODSEQ of the transaction that removed them.
-- The oldest are dropped beyond a bound; vanished_floor then rises to the
-- MODSEQ of the newest dropped: the records are complete for a client
-- that knows at least that MODSEQ. Mailboxes of schema 1 start complete
-- from their current MODSEQ.
CREATE TABLE vanished (
	mailbox_id bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
	modseq     bigint NOT NULL,
	lo         bigint NOT NULL,
	hi         bigint NOT NULL,
	PRIMARY KEY (mailbox_id, modseq, lo)
);
ALTER TABLE mailboxes ADD COLUMN vanished_floor bigint NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN vanished_rows bigint NOT NULL DEFAULT 0;
UPDATE mailboxes SET vanished_floor = highestmodseq;

-- Subscriptions to names that no longer name a mailbox (RFC 9051 section
-- 6.3.7: a server SHOULD NOT drop them when the mailbox goes).
CREATE TABLE gone_subscriptions (
	user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name    text   NOT NULL,
	PRIMARY KEY (user_id, name)
);

-- Mailboxes deleted, for the change feed's catch-up (sessions that had
-- one selected learn that it went); kept a day.
CREATE TABLE deleted_mailboxes (
	mailbox_id bigint      PRIMARY KEY,
	user_name  text        NOT NULL,
	change_xid bigint      NOT NULL,
	deleted_at timestamptz NOT NULL DEFAULT now()
);
