-- Schema 3: the outbound queue shared by the nodes (server/queue), the
-- greylist (server/inbound) and the login-failure counters (server/auth).

-- A body is written in the same transaction as the records that refer to
-- it: no record is visible without its body. One body is shared by the
-- records of one message (one record per destination domain).
CREATE TABLE queue_bodies (
	id   text  PRIMARY KEY,
	body bytea NOT NULL
);

-- One record per message and destination domain. A node delivers a record
-- only while it holds its lease: lease_token is drawn at each claim, and an
-- outcome is recorded only by the holder of the current token. A lease that
-- expired (lease_until in the past: its node died or stalled) may be claimed
-- by any node.
CREATE TABLE queue_messages (
	id             text        PRIMARY KEY,
	body_id        text        NOT NULL REFERENCES queue_bodies (id),
	sender         text        NOT NULL,
	domain         text        NOT NULL,
	dkim           text        NOT NULL DEFAULT '',
	size           bigint      NOT NULL,
	created        timestamptz NOT NULL,
	next           timestamptz NOT NULL,
	attempts       integer     NOT NULL DEFAULT 0,
	last_error     text        NOT NULL DEFAULT '',
	delay_notified boolean     NOT NULL DEFAULT false,
	is_dsn         boolean     NOT NULL DEFAULT false,
	smtputf8       boolean     NOT NULL DEFAULT false,
	lease_owner    text,
	lease_token    text,
	lease_until    timestamptz
);
CREATE INDEX queue_messages_next ON queue_messages (next);
CREATE INDEX queue_messages_body ON queue_messages (body_id);

CREATE TABLE queue_recipients (
	message_id text    NOT NULL REFERENCES queue_messages (id) ON DELETE CASCADE,
	ord        integer NOT NULL,
	addr       text    NOT NULL,
	state      text    NOT NULL DEFAULT '',  -- '', 'delivered', 'failed'
	status     text    NOT NULL DEFAULT '',
	diagnostic text    NOT NULL DEFAULT '',
	remote_mta text    NOT NULL DEFAULT '',
	PRIMARY KEY (message_id, ord)
);

-- The IP warm-up ramp's counters, per node (each node has its own
-- addresses): key 'start' or 'day:YYYY-MM-DD'.
CREATE TABLE queue_warmup (
	node  text NOT NULL,
	key   text NOT NULL,
	value text NOT NULL,
	PRIMARY KEY (node, key)
);

-- Greylisting triplets (client network, sender, recipient).
CREATE TABLE greylist (
	triplet    text        PRIMARY KEY,
	first_seen timestamptz NOT NULL,
	last_seen  timestamptz NOT NULL,
	passed     boolean     NOT NULL DEFAULT false
);

-- Authentication failures within the counting window, per client address
-- ('ip:...') and per account ('user:...'). An attempt in progress holds a
-- row of its address (a reservation), deleted if it succeeds.
CREATE TABLE auth_failures (
	id  bigserial   PRIMARY KEY,
	key text        NOT NULL,
	at  timestamptz NOT NULL
);
CREATE INDEX auth_failures_key_at ON auth_failures (key, at);
