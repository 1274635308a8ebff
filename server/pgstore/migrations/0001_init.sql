-- Schema 1: users, mailboxes, messages and their bodies.
-- UIDs and UIDVALIDITY are 32-bit unsigned in IMAP, MODSEQ 63-bit: all
-- kept in bigint.

CREATE TABLE users (
	id               bigserial PRIMARY KEY,
	name             text      NOT NULL UNIQUE,
	quota            bigint    NOT NULL DEFAULT 0,  -- bytes, 0 = unlimited
	used             bigint    NOT NULL DEFAULT 0,  -- bytes of messages
	messages         bigint    NOT NULL DEFAULT 0,
	last_uidvalidity bigint    NOT NULL DEFAULT 0   -- highest UIDVALIDITY given
);

CREATE TABLE mailboxes (
	id            bigserial PRIMARY KEY,
	user_id       bigint    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name          text      NOT NULL,
	uidvalidity   bigint    NOT NULL,
	uidnext       bigint    NOT NULL DEFAULT 1,
	highestmodseq bigint    NOT NULL DEFAULT 1,
	special_use   text      NOT NULL DEFAULT '',
	subscribed    boolean   NOT NULL DEFAULT true,
	messages      bigint    NOT NULL DEFAULT 0,
	size          bigint    NOT NULL DEFAULT 0,
	UNIQUE (user_id, name)
);

CREATE TABLE messages (
	mailbox_id    bigint      NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
	uid           bigint      NOT NULL,
	modseq        bigint      NOT NULL,
	flags         text[]      NOT NULL DEFAULT '{}',
	internal_date timestamptz NOT NULL,
	size          bigint      NOT NULL,
	PRIMARY KEY (mailbox_id, uid)
);

-- Bodies apart, so that listing messages never reads them.
CREATE TABLE message_bodies (
	mailbox_id bigint NOT NULL,
	uid        bigint NOT NULL,
	body       bytea  NOT NULL,
	PRIMARY KEY (mailbox_id, uid),
	FOREIGN KEY (mailbox_id, uid) REFERENCES messages (mailbox_id, uid) ON DELETE CASCADE
);
