// Package pgstore is the mail store on PostgreSQL that several `mailctl
// serve` nodes share (issue 20): serve runs on it when server.json has
// store.postgres_url_file (server/daemon/storeopen.go), `mailctl store
// migrate` creates and upgrades its schema (run by apply), and `mailctl
// store copy` moves a server between it and the embedded store
// (server/storecopy, import.go). The outbound queue, greylisting and
// login-failure counters of nodes on one database are shared too, in
// server/queue and server/inbound and server/auth, in tables of this
// package's migrations (0003_queue.sql).
//
// Why not a library: the semantics are server/store's (IMAP UIDs,
// MODSEQs, \Recent, QRESYNC records), which no Go mail-store library on
// PostgreSQL offers; pgx/v5 is the driver and pool.
//
// # What exists
//
//   - Versioned schema migrations: the files migrations/NNNN_name.sql,
//     embedded, numbered without a gap. Migrate applies each missing one
//     in a transaction of its own (a failing migration leaves the schema
//     at the previous version, nothing half-applied) and records it in
//     the table schema_version; a transaction-level advisory lock makes
//     nodes that migrate at once take turns. Migrate and Open refuse a
//     database whose schema is newer than the binary (ErrSchemaTooNew,
//     one line saying both versions); Open also refuses an older one
//     (ErrSchemaTooOld) rather than migrating behind the operator's back.
//   - Tables (schema 1): users (quota, bytes used, last UIDVALIDITY),
//     mailboxes (uidvalidity, uidnext, highestmodseq, special use,
//     subscription, counters), messages (uid, modseq, flags as text[],
//     internal date, size). Schema 2 (0002_imap.sql): bodies, shared by
//     the copies of a message (refs), with the header captured at
//     delivery and its summary, their bytes in body_chunks of at most
//     1 MiB; messages get a row id (store.Message.Ref, kept by a MOVE)
//     and body_id; mailboxes get recent_uid, change_xid and the bounds of
//     the table vanished; gone_subscriptions and deleted_mailboxes.
//   - *Store is a store.Backend (backend.go): every method server/imap
//     uses, with server/store's semantics and sentinel errors
//     (store.ErrNoSuchUser, ErrNoSuchMailbox, ErrMailboxExists,
//     ErrQuotaExceeded, ErrInvalidMailbox, ErrInboxNotAllowed,
//     ErrHasChildren, store.LimitError) and its mailbox name and flag
//     rules (reimplemented in flags.go: server/store keeps them
//     unexported). Users, mailboxes (create, delete, rename with children
//     and INBOX's rule, subscriptions kept by name for a deleted mailbox),
//     Deliver and Append (acknowledged after COMMIT), Messages and
//     MessagesByID (one REPEATABLE READ snapshot), OpenBody, SetFlags,
//     SetFlagsUnchangedSince and SetFlagsCount (one new MODSEQ per call,
//     checked under the mailbox row lock; for system flags the lock, the
//     write and its commit are one batch, one round trip, flagsql.go;
//     SetFlagsCount, store.FlagWriteCounter, answers with the number of
//     messages changed instead of the messages), Expunge, Copy and Move (one transaction each,
//     bodies shared, a copy counted against the quota), ClaimRecent
//     (\Recent for one session on any node), Vanished (expunged UIDs as
//     ranges under their MODSEQ, at most 8192 rows a mailbox, the floor
//     raised when the oldest go), Headers and Summaries.
//   - Bodies: Deliver streams a body larger than a chunk into its
//     transaction before taking any lock (an unlocked check first refuses
//     what the commit would); OpenBody reads the first chunk with the
//     existence check and the others when they are read, so neither side
//     holds a large message in memory.
//   - Bodies outlive their last message (schema 4, 0004_body_gc.sql): a
//     body opened on one node and expunged meanwhile on another is read
//     to the end, as with the embedded store and Dovecot. Expunge and
//     DeleteMailbox only drop references; a body left with none
//     is stamped released_at (the database's clock) in that transaction,
//     and quota and usage count its message as gone at once. A sweeper,
//     started by Open and stopped by Close on every node, deletes the
//     bodies released longer than the grace ago (SetBodyGrace, 10 minutes
//     by default: longer than any FETCH) with their chunks, in
//     transactions of at most 64 bodies; nodes never wait for each other
//     (FOR UPDATE SKIP LOCKED), and a body that a message uses is never
//     deleted whatever its count says. A read of a body later than the
//     grace after its expunge fails with os.ErrNotExist.
//   - A node-local cache of headers and summaries by body id
//     (headercache.go: bodies never change), at most 8 MiB, least
//     recently used out first, emptied a minute after its last use,
//     with each mailbox's UID -> body map (mailboxes of at most 20 000
//     messages) as of its change stamp: Headers and Summaries read one
//     row (the stamp) when both are current.
//   - SEARCH BODY and TEXT answered by the database (schema 8,
//     0008_search_text.sql, bodysearch.go; store.TextSearcher): the IMAP
//     server's function (SetSearchText) makes, when a body of one chunk
//     is written (Deliver, Append, import), the decoded and lowered text
//     those keys match, kept in body_texts beside the body (shared by
//     its copies, lz4-compressed in the row where the server has lz4);
//     SearchText runs every needle of a SEARCH as strpos over a mailbox's
//     kept texts in one statement, and the node reads only the bodies
//     without one, whose texts it then hands back (KeepText): a database
//     upgraded from an older schema gets them from its first searches. Texts are
//     kept on databases in UTF8 or SQL_ASCII only.
//   - UID and MODSEQ allocation in transactions. Lock order, to stay free
//     of deadlocks: a user's row, then mailbox rows (by id when several).
//     Deliver updates the user's counters (quota check) and then the
//     mailbox row (uidnext+1, highestmodseq+1) with RETURNING, so
//     concurrent deliveries from any node into a mailbox are ordered by
//     those row locks and never share a UID. The user row lock serialises
//     the deliveries of one user (as bbolt's single writer does for the
//     whole embedded store); a per-mailbox quota reservation would lift
//     that.
//   - A change feed: every write transaction stamps the mailboxes it
//     changes with its transaction id (change_xid) and, after its
//     COMMIT, sends pg_notify on the channel mailctl_change with {"u":
//     user, "m": mailbox id, "x": transaction id} in an autocommit
//     statement from the Store's notifier goroutine, without the write
//     waiting for it (writeTx: a NOTIFY inside the transaction would keep
//     PostgreSQL from grouping the commits' WAL flushes), delivered to
//     every listening session. Open starts a dedicated connection that
//     LISTENs before Open returns; Watch registers a func(store.Change)
//     like server/store's. Changes made through this Store come back
//     through the same feed, so one path serves local and remote
//     sessions (the basis of multi-node IDLE). After a lost connection,
//     the listener announces every mailbox stamped (or deleted) at or
//     above the oldest transaction running when its previous LISTEN took
//     effect; and every second a poll announces the mailboxes stamped
//     since its previous poll whose notification did not come (a node
//     that died between COMMIT and notification), so nothing committed
//     goes unannounced for longer than that.
//
// The tests (TestPostgres) start a private cluster from the Debian
// package postgresql (internal/testenv.StartPostgres), a database per
// subtest, including two Stores on one database as two nodes.
//
// # Not done
//
//   - Bodies in an S3-compatible object store behind the same interface,
//     with the object written before the COMMIT that references it.
//   - Backup snapshots through the control socket: a node on this store
//     refuses `mailctl backup` and points at pg_dump (docs/operations.md).
//   - CalDAV/CardDAV data stays in each node's local store (server/dav).
//
// Durability: an acknowledged message is one whose transaction committed;
// the database must keep synchronous_commit on (its default), and a
// replica that takes over must be synchronous for nothing acknowledged
// to be lost in a failover.
package pgstore
