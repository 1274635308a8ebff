// Package pgstore is the foundation of a mail store on PostgreSQL, for
// several `mailctl serve` nodes sharing one database (issue 20). It is
// not used by any command yet: server/store, the embedded store, stays
// the only backend reachable from the CLI until the parts listed under
// "Missing" exist.
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
//     internal date, size) and message_bodies (bytea, apart so that
//     listing never reads bodies; deleted with their message by cascade).
//   - Operations with server/store's semantics and sentinel errors
//     (store.ErrNoSuchUser, ErrNoSuchMailbox, ErrMailboxExists,
//     ErrQuotaExceeded, ErrInvalidMailbox, store.LimitError), its mailbox
//     name and flag rules (reimplemented in flags.go: server/store keeps
//     them unexported): EnsureUser, CreateMailbox, Mailboxes, Mailbox,
//     Deliver and Append (acknowledged after COMMIT), Messages (one
//     REPEATABLE READ snapshot), OpenBody (os.ErrNotExist once expunged),
//     SetFlags (one new MODSEQ per call, HIGHESTMODSEQ follows),
//     SetFlagsUnchangedSince (RFC 7162 UNCHANGEDSINCE, checked under the
//     mailbox row lock) and Expunge (\Deleted only, optionally restricted
//     to UIDs); Users, Quota and Usage.
//   - UID and MODSEQ allocation in transactions. Lock order, to stay free
//     of deadlocks: a user's row, then a mailbox's row. Deliver updates
//     the user's counters (quota check) and then the mailbox row
//     (uidnext+1, highestmodseq+1) with RETURNING, so concurrent
//     deliveries from any node into a mailbox are ordered by those row
//     locks and never share a UID. The user row lock serialises the
//     deliveries of one user (as bbolt's single writer does for the whole
//     embedded store); a per-mailbox quota reservation would lift that.
//   - A change feed: every write transaction runs pg_notify on the
//     channel mailctl_change with {"u": user, "m": mailbox id}, delivered
//     at COMMIT (never for a rollback) to every listening session. Open
//     starts a dedicated connection that LISTENs before Open returns;
//     Watch registers a func(store.Change) like server/store's. Changes
//     made through this Store come back through the same feed, so one
//     path serves local and remote sessions (the basis of multi-node
//     IDLE).
//
// The tests (TestPostgres) start a private cluster from the Debian
// package postgresql (internal/testenv.StartPostgres), a database per
// subtest, including two Stores on one database as two nodes.
//
// # Missing (for issue 20)
//
//   - The rest of server/store's API that server/imap uses: DeleteMailbox,
//     RenameMailbox, SetSubscribed, Copy, Move, \Recent (ClaimRecent),
//     vanished UIDs for QRESYNC (a table of expunged UIDs with their
//     MODSEQ), header summaries for FETCH ENVELOPE, backup snapshots.
//     Then an interface that server/imap and server/smtp take,
//     implemented by both backends, and the concurrent IMAP conformance
//     test run across nodes.
//   - Bodies are read into memory and kept in bytea (at most 1 GB, and a
//     copy in memory per OpenBody): large bodies want chunks or an
//     S3-compatible object store behind the same interface, with the
//     object written before the COMMIT that references it.
//   - The change feed does not replay what it missed while its connection
//     was down (it logs it): on reconnection, sessions must resynchronise
//     (e.g. compare HIGHESTMODSEQ of the mailboxes they have selected).
//   - The outbound queue on PostgreSQL with leases (SELECT ... FOR UPDATE
//     SKIP LOCKED, lease expiry for a dead node), and greylisting and
//     login caches in shared tables.
//   - Configuration: `store { postgres = "..." }` (a secret) in the HCL
//     plan and server.json, `domain { servers = [...] }`, plan/apply of
//     several nodes with every MX, migrations run by apply, verify per
//     node.
//   - Migration of a server between the embedded store and PostgreSQL
//     (keeping UIDVALIDITY, UIDs and MODSEQs), SIGKILL tests of a node
//     during ingest and IMAP, the benchmark against the embedded store,
//     and docs/operations.md (one PostgreSQL, its backups, node failover).
//
// Durability: an acknowledged message is one whose transaction committed;
// the database must keep synchronous_commit on (its default), and a
// replica that takes over must be synchronous for nothing acknowledged
// to be lost in a failover.
package pgstore
