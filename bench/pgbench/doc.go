// Package pgbench measures the mail store on PostgreSQL (server/pgstore)
// against the embedded store (server/store) at the store level, for the
// benchmark of issue 20: the same deliveries of the same ~10 KiB bodies
// into both, with the cost per message that the scaling model in
// bench/RESULTS.md needs (go test -bench . ./bench/pgbench/):
//
//   - ns/op and msgs/s: wall time per delivered message;
//   - cpu-us/msg: CPU of this process (the node: the store's client side),
//     from getrusage, per message;
//   - pg-cpu-us/msg: CPU of the PostgreSQL cluster (postmaster, backends,
//     WAL writer, checkpointer, ...; the children that exited are counted
//     through the postmaster's cutime/cstime), from /proc, per message;
//   - xacts/msg: committed transactions (pg_stat_database.xact_commit,
//     read after the store's connections are closed, so that every backend
//     has flushed its counters);
//   - rt/msg: network round trips between the node and the database per
//     message, counted on the wire by a loopback proxy in a separate pass
//     (a round trip is the client speaking again after the server
//     answered; pipelined messages count once);
//   - wal-B/msg: WAL bytes per message (pg_current_wal_lsn before/after).
//
// The cluster is the private one of internal/testenv (initdb in a
// temporary directory, loopback port) with PostgreSQL's defaults, so
// fsync and synchronous_commit are on: a message counts as delivered once
// it is durable, as with the embedded store.
//
// The round-trip counter (wire.go) is written here rather than taken from
// a library: what is wanted is the number of request/response turns on
// one TCP connection, which a 60-line byte copier sees directly, while
// PostgreSQL's own statistics count statements (pipelined or not) and a
// protocol-level proxy library would parse far more than this needs.
package pgbench
