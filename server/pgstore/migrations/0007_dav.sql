-- Schema 7: calendars and contacts (server/davpg) for the nodes that share
-- this database, which would each see their own otherwise. The same model
-- as the embedded dav.db: a collection counts the changes to its objects
-- (seq) and keeps, per object name ever stored, the number of its last
-- change (dav_changes, deleted names included): a sync token is the
-- collection's epoch and a number. Names compare bytewise (COLLATE "C"), as
-- the embedded store sorts them.

-- The users whose default calendar and address book were made (once: a user
-- who deletes them does not get them back).
CREATE TABLE dav_users (
	name text COLLATE "C" PRIMARY KEY
);

CREATE TABLE dav_collections (
	id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	owner        text COLLATE "C" NOT NULL,
	kind         text   NOT NULL,  -- 'calendars' or 'contacts'
	name         text COLLATE "C" NOT NULL,
	display_name text   NOT NULL DEFAULT '',
	description  text   NOT NULL DEFAULT '',
	color        text   NOT NULL DEFAULT '',
	epoch        text   NOT NULL,  -- new for each incarnation of a name
	seq          bigint NOT NULL DEFAULT 0,
	UNIQUE (owner, kind, name)
);

CREATE TABLE dav_objects (
	collection_id bigint      NOT NULL REFERENCES dav_collections (id) ON DELETE CASCADE,
	name          text COLLATE "C" NOT NULL,
	etag          text        NOT NULL,
	mod_time      timestamptz NOT NULL,
	seq           bigint      NOT NULL,
	data          bytea       NOT NULL,
	PRIMARY KEY (collection_id, name)
);

-- One row per name ever stored in a collection: the number of its last
-- change; a name without a dav_objects row was deleted (a tombstone).
CREATE TABLE dav_changes (
	collection_id bigint NOT NULL REFERENCES dav_collections (id) ON DELETE CASCADE,
	name          text COLLATE "C" NOT NULL,
	seq           bigint NOT NULL,
	PRIMARY KEY (collection_id, name)
);
CREATE UNIQUE INDEX dav_changes_seq ON dav_changes (collection_id, seq);
