#!/bin/bash
# `mailctl serve` on PostgreSQL against `mailctl serve` on the embedded
# store (the anchor), in one run (issue 20): the SMTP ingest and the IMAP
# operations of bench/run.sh (the same client scripts, bench/anchors/),
# runs interleaved (embedded, postgres, embedded, ...), then a table of
# medians with the ratio postgres / embedded, and the costs per message of
# the PostgreSQL side: CPU of the serve process and of the whole cluster
# (/proc/<pid>/stat utime+stime; backends that exited through the
# postmaster's cutime+cstime), statements (pg_stat_statements, top level,
# BEGIN/COMMIT included), commits (pg_stat_database.xact_commit) and WAL
# bytes (pg_current_wal_lsn) per message. Memory (PSS, RSS): the serve
# process, plus for postgres the whole cluster's process tree.
#
# usage: bench/pg.sh        env: RUNS=3 N=2000 C=10 SIZE=10240 IMAP_N=2000
#        IMAP_CLIENTS="1 4" BENCH_DIR=/var/tmp/mailctl-bench/pg INBOUND=skip
#        PG_PORT=25432 FSYNC_TEST=1 (pg_test_fsync, ~20 s) KEEP=0
# The cluster is private: initdb in $BENCH_DIR/pgdata (as user nobody when
# run as root: PostgreSQL refuses root), listening on 127.0.0.1:$PG_PORT
# only (below the ephemeral ports; the next ones if taken), trust authentication, fsync and synchronous_commit on (durability
# as in production), pg_stat_statements preloaded. It is stopped and
# removed at the end (KEEP=1 keeps it). Servers: embedded on 127.0.0.1
# ports 3525 (SMTP) / 3143 (IMAP), postgres on 3625 / 3243 (bench/run.sh
# with PORT_OFFSET=100). INBOUND as in bench/run.sh; the default here is
# skip (no SPF/DKIM/DMARC checks): the store is what is compared.
# A build whose `mailctl serve` refuses store.postgres_url_file stops
# here with that error (the store-level figures: go test -bench .
# ./bench/pgbench/). Results: $BENCH_DIR/results/<stamp>-*.txt.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
A=$REPO/bench/anchors
B=${BENCH_DIR:-/var/tmp/mailctl-bench/pg}
export INBOUND=${INBOUND:-skip}
RUNS=${RUNS:-3} N=${N:-2000} C=${C:-10} SIZE=${SIZE:-10240}
IMAP_N=${IMAP_N:-2000} IMAP_CLIENTS=${IMAP_CLIENTS:-"1 4"}
PG_PORT=${PG_PORT:-25432}
PASS=bench-ours-password
export REUSE=${REUSE:-0} TIMEOUT=${TIMEOUT:-900} OURS_PASS=$PASS
export SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "no /usr/lib/postgresql/*/bin/initdb (Debian package postgresql)" >&2; exit 2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in 3525 3143 3625 3243; do
  port_open "$p" && { echo "port $p is already in use" >&2; exit 1; }
done

mkdir -p "$B/results" "$B/logs"

# ---------------------------------------------------------------- cluster
AS=()
if [ "$(id -u)" = 0 ]; then AS=(runuser -u nobody --); fi
PGD=$B/pgdata
SPIDS=
cleanup() {
  trap - EXIT INT TERM
  for p in $SPIDS; do kill -TERM "$p" 2>/dev/null || true; done
  for p in $SPIDS; do wait "$p" 2>/dev/null || true; done
  if [ -f "$PGD/postmaster.pid" ]; then
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$PGD" -m fast -w stop >/dev/null 2>&1 || true
  fi
  [ "${KEEP:-0}" = 1 ] || rm -rf "$PGD"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$PGD"
mkdir -p "$PGD"
[ ${#AS[@]} = 0 ] || chown nobody "$PGD"
chmod 700 "$PGD"
"${AS[@]}" "$PGBIN/initdb" -D "$PGD" -U postgres --auth=trust -E UTF8 --locale=C \
  --no-instructions >"$B/logs/initdb.log" 2>&1 || { cat "$B/logs/initdb.log" >&2; exit 1; }
cat >> "$PGD/postgresql.conf" <<CONF
# bench/pg.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = on
synchronous_commit = on
full_page_writes = on
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = top
pg_stat_statements.track_utility = on
CONF
started=0
for _ in 1 2 3 4 5 6 7 8; do  # a port taken (even by a client's socket): the next one
  if ! port_open "$PG_PORT" && "${AS[@]}" "$PGBIN/pg_ctl" -D "$PGD" -l "$PGD/server.log" \
      -o "-p $PG_PORT" -w -t 60 start >/dev/null; then
    started=1; break
  fi
  grep -q 'Address already in use' "$PGD/server.log" 2>/dev/null || break
  PG_PORT=$((PG_PORT + 1))
done
[ $started = 1 ] || { echo "PostgreSQL did not start; its log ends with:" >&2; tail -5 "$PGD/server.log" >&2; exit 1; }
PSQL=("$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 "postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable")
"${PSQL[@]}" -c "CREATE DATABASE mailctl" -c "CREATE EXTENSION pg_stat_statements"
PMPID=$(head -1 "$PGD/postmaster.pid")

# The two servers' directories and configurations, by bench/run.sh.
BENCH_DIR=$B/embedded PREPARE_ONLY=1 "$REPO/bench/run.sh"
printf 'postgres://postgres@127.0.0.1:%s/mailctl?sslmode=disable\n' "$PG_PORT" > "$B/pg.url"
chmod 600 "$B/pg.url"
BENCH_DIR=$B/postgres PREPARE_ONLY=1 STORE=postgres PG_URL_FILE=$B/pg.url PORT_OFFSET=100 "$REPO/bench/run.sh"
EMB=$B/embedded/ours PGS=$B/postgres/ours

stamp=$(date +%Y%m%d-%H%M%S)
R=$B/results/$stamp
{ echo "# $(date -Is) bench/pg.sh on $(nproc) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# RUNS=$RUNS N=$N C=$C SIZE=$SIZE REUSE=$REUSE IMAP_N=$IMAP_N IMAP_CLIENTS=\"$IMAP_CLIENTS\" INBOUND=$INBOUND"
  echo "# $("${PSQL[@]}" -c 'SELECT version()')"
  echo "# $("${PSQL[@]}" -F ' ' -c "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings
    WHERE name IN ('fsync','synchronous_commit','wal_sync_method','shared_buffers','full_page_writes','wal_level','max_wal_size','checkpoint_timeout')")"
} | tee "$R-env.txt"
if [ "${FSYNC_TEST:-1}" = 1 ] && [ -x "$PGBIN/pg_test_fsync" ]; then
  # One 8 kB write then its flush, the commit of one transaction: the
  # ceiling of commits per second that cannot share a flush.
  "${AS[@]}" "$PGBIN/pg_test_fsync" -s 2 -f "$PGD/fsync.test" 2>&1 |
    awk '/one 8kB write/{on=1} /two 8kB writes/{on=0} on && /ops\/sec/{gsub(/ +/," "); print "# pg_test_fsync 8kB:" $0}' | tee -a "$R-env.txt"
  rm -f "$PGD/fsync.test"
fi

# ---------------------------------------------------------------- servers
start_serve() {  # start_serve DIR SMTP_PORT IMAP_PORT -> SERVE_PID
  "$1/mailctl" serve -config "$1/server.json" >"$1/serve.log" 2>&1 </dev/null &
  SERVE_PID=$!; SPIDS="$SPIDS $SERVE_PID"
  for _ in $(seq 1 120); do
    port_open "$2" && port_open "$3" && return 0
    kill -0 "$SERVE_PID" 2>/dev/null || break
    sleep 0.5
  done
  echo "mailctl serve ($1) did not open $2/$3; its log ends with:" >&2
  tail -3 "$1/serve.log" >&2
  exit 1
}
# The schema, as `mailctl apply` creates it before the nodes start.
"$PGS/mailctl" store migrate -url-file "$B/pg.url" | tee -a "$R-env.txt"
start_serve "$EMB" 3525 3143; EPID=$SERVE_PID
start_serve "$PGS" 3625 3243; PGPID=$SERVE_PID
echo "# embedded pid $EPID, postgres pid $PGPID, postmaster pid $PMPID" | tee -a "$R-env.txt"
sleep 3

# ---------------------------------------------------------------- costs
ticks() {  # ticks PID [tree]: CPU clock ticks (user+system) of PID, or of its tree
  python3 - "$@" <<'PY'
import os, sys
def st(pid):
    s = open(f'/proc/{pid}/stat').read()
    f = s[s.rindex(')') + 2:].split()
    return int(f[1]), [int(x) for x in f[11:15]]
root = int(sys.argv[1])
_, t = st(root)
n = t[0] + t[1]
if len(sys.argv) > 2:
    n += t[2] + t[3]
    for e in os.listdir('/proc'):
        if e.isdigit() and int(e) != root:
            try:
                pp, c = st(int(e))
            except (OSError, ValueError, IndexError):
                continue
            if pp == root:
                n += c[0] + c[1]
print(n)
PY
}
dbsnap() {  # statements commits lsn of the database mailctl (asked from another database)
  "${PSQL[@]}" -F ' ' -c "SELECT (SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s
      WHERE s.dbid = d.datid), d.xact_commit, pg_current_wal_lsn()
    FROM pg_stat_database d WHERE d.datname = 'mailctl'"
}
HZ=$(getconf CLK_TCK)
SNAP=
snap() {  # snap LABEL: remember the counters before a phase
  if [ "$1" = postgres ]; then
    sleep 2  # idle backends flush their statistics within a second
    SNAP="$(ticks "$PGPID") $(ticks "$PMPID" tree) $(dbsnap)"
  else
    SNAP="$(ticks "$EPID")"
  fi
}
cost() {  # cost LABEL PHASE COUNT: print a COST line for the phase since snap
  local now s0 p0 st0 x0 l0 s1 p1 st1 x1 l1 wal
  if [ "$1" = postgres ]; then
    s1=$(ticks "$PGPID"); p1=$(ticks "$PMPID" tree)
    sleep 2
    read -r st1 x1 l1 <<<"$(dbsnap)"
    read -r s0 p0 st0 x0 l0 <<<"$SNAP"
    wal=$("${PSQL[@]}" -c "SELECT pg_wal_lsn_diff('$l1', '$l0')::bigint")
    python3 -c 'import sys
lab, ph, n, hz, s, p, st, x, w = sys.argv[1:]; n = int(n); hz = int(hz)
print(f"COST label={lab} phase={ph} n={n} serve_cpu_ms_per_msg={int(s)/hz*1000/n:.3f} "
      f"pg_cpu_ms_per_msg={int(p)/hz*1000/n:.3f} stmts_per_msg={int(st)/n:.2f} "
      f"xacts_per_msg={int(x)/n:.2f} wal_bytes_per_msg={int(w)/n:.0f}")' \
      "$1" "$2" "$3" "$HZ" $((s1 - s0)) $((p1 - p0)) $((st1 - st0)) $((x1 - x0)) "$wal"
  else
    s1=$(ticks "$EPID"); s0=$SNAP
    python3 -c 'import sys
lab, ph, n, hz, s = sys.argv[1:]
print(f"COST label={lab} phase={ph} n={n} serve_cpu_ms_per_msg={int(s)/int(hz)*1000/int(n):.3f}")' \
      "$1" "$2" "$3" "$HZ" $((s1 - s0))
  fi
}

# ---------------------------------------------------------------- load
U=bench@bench.test
sport() { [ "$1" = postgres ] && echo 3625 || echo 3525; }
iport() { [ "$1" = postgres ] && echo 3243 || echo 3143; }
roots() { [ "$1" = postgres ] && echo "$PGPID $PMPID" || echo "$EPID"; }  # memory: serve (+ cluster)
ingest() {  # ingest LABEL
  local ip; ip=$(iport "$1")
  python3 "$A/mailcount.py" empty imap 127.0.0.1 "$ip" "$U" "$PASS" INBOX >/dev/null
  sync; snap "$1"
  IMAP_COUNT="127.0.0.1 $ip $U $PASS INBOX" LABEL=$1 BENCH_DIR=$B RSS_ROOTS=$(roots "$1") \
    nice "$A/smtp-ingest.sh" 127.0.0.1 "$(sport "$1")" "$U" "$N" "$C" "$SIZE" 2>&1 | tee -a "$R-smtp.txt"
  cost "$1" ingest "$N" | tee -a "$R-cost.txt"
}
for i in $(seq 1 "$RUNS"); do
  echo "== ingest round $i/$RUNS"
  ingest embedded
  ingest postgres
done
for l in embedded postgres; do
  python3 "$A/mailcount.py" empty imap 127.0.0.1 "$(iport $l)" "$U" "$PASS" INBOX >/dev/null
done

echo "== IMAP populate (APPEND until Bench holds $IMAP_N)"
for l in embedded postgres; do
  snap "$l"
  nice python3 "$A/imap-fetch.py" 127.0.0.1 "$(iport $l)" "$U" "$PASS" --n "$IMAP_N" --populate --exact \
    --clients 1 --logins 1 --label "$l" 2>&1 | grep -E '^POPULATE|rror' | tee -a "$R-imap.txt"
  cost "$l" append "$IMAP_N" | tee -a "$R-cost.txt"
done
for c in $IMAP_CLIENTS; do
  for i in $(seq 1 "$RUNS"); do
    echo "== IMAP clients=$c round $i/$RUNS"
    for l in embedded postgres; do
      snap "$l"
      nice python3 "$A/imap-fetch.py" 127.0.0.1 "$(iport $l)" "$U" "$PASS" --n "$IMAP_N" --clients "$c" \
        --rss-roots "$(roots $l)" --label "$l" --json "$R-imap.jsonl" 2>&1 | grep -E '^RESULT|rror' | tee -a "$R-imap.txt"
      # per message of the mailbox, for one run of the whole IMAP sequence
      cost "$l" "imap-c$c" "$IMAP_N" | tee -a "$R-cost.txt"
    done
  done
done

echo
echo "== summary ($R-*.txt; ratio = postgres / embedded, goal <= 2x)"
python3 "$A/compare.py" --ours postgres --smtp-anchor embedded --imap-anchor embedded "$R-smtp.txt" "$R-imap.txt" |
  sed '$s/.*/(^ higher is better, v lower is better; anchor = mailctl serve on the embedded store)/' | tee "$R-table.txt"
echo
echo "== costs per message (median over runs; IMAP: one run of the sequence / messages in the mailbox)"
python3 - "$R-cost.txt" <<'PY' | tee -a "$R-table.txt"
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    if not line.startswith('COST '):
        continue
    kv = dict(re.findall(r'(\w+)=([-\w.]+)', line))
    rows.setdefault((kv['phase'], kv['label']), []).append(kv)
keys = ['serve_cpu_ms_per_msg', 'pg_cpu_ms_per_msg', 'stmts_per_msg', 'xacts_per_msg', 'wal_bytes_per_msg']
print(f"{'phase':10} {'store':9} " + ' '.join(f'{k[:-8]:>13}' for k in keys))
for (ph, lab), rs in rows.items():
    cells = []
    for k in keys:
        v = [float(r[k]) for r in rs if k in r]
        cells.append(f'{statistics.median(v):13g}' if v else f"{'-':>13}")
    print(f'{ph:10} {lab:9} ' + ' '.join(cells))
PY
echo
echo "== statements of the whole run on PostgreSQL (pg_stat_statements, by calls)"
"${PSQL[@]}" -F ' | ' -c "SELECT calls, round(mean_exec_time::numeric, 3) AS mean_ms,
    left(regexp_replace(query, '\s+', ' ', 'g'), 110)
  FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
  WHERE d.datname = 'mailctl' ORDER BY calls DESC LIMIT 20" | tee "$R-statements.txt"
