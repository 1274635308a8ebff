#!/bin/bash
# Benchmark of `mailctl serve` side by side with Postfix (SMTP ingest) and
# Dovecot (IMAP), using the anchor scripts in bench/anchors (their README
# says how the anchors are installed, configured and measured).
#
# usage: bench/run.sh                 quick: N=2000, IMAP_N=2000, RUNS=3
#        FULL=1 bench/run.sh          full size (see bench/anchors/README.md)
# env: SKIP_SETUP=1 (anchors already configured), OURS_PASS, BENCH_DIR,
#      INBOUND=stub|closed|skip (below), and everything run-anchors.sh reads
#      (RUNS, N, C, SIZE, IMAP_N, ...).
#
# Ours listens on 127.0.0.1: SMTP 3525, IMAP 3143 (plaintext LOGIN, which
# the server allows to loopback clients only, as Dovecot does: both IMAP
# servers are measured the same way, without TLS) and IMAPS 3993.
# No DNSBL (the Postfix anchor has none). The Postfix anchor checks nothing
# else either; ours checks SPF, DKIM, DMARC and iprev on port 25, unless
# INBOUND=skip. Their DNS questions never leave the machine:
#   INBOUND=stub    (default) checks on; DNS from bench/dnsstub on
#                   127.0.0.1:5354, which answers NXDOMAIN at once, as a
#                   local caching resolver would for these test names. It
#                   runs outside the server's process tree (not counted).
#   INBOUND=closed  checks on; DNS to a closed port: every lookup fails at
#                   once (temperror).
#   INBOUND=skip    the loopback client is in inbound.skip_networks: no
#                   checks, the same work as the Postfix anchor.
# Knobs for bench/pg.sh (defaults: the embedded store, the ports above):
#   STORE=postgres PG_URL_FILE=/abs/file  the server keeps its mail in the
#                   PostgreSQL database whose URL the file holds (issue 20)
#   PORT_OFFSET=N   every listening port above + N
#   PREPARE_ONLY=1  build and write $BENCH_DIR/ours/server.json, then exit
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED=$REPO/bench/anchors
export BENCH_DIR=${BENCH_DIR:-/var/tmp/mailctl-bench}
OURS=$BENCH_DIR/ours
PASS=${OURS_PASS:-bench-ours-password}

mkdir -p "$OURS"
(cd "$REPO" && go build -o "$OURS/mailctl" ./cmd/mailctl && go build -o "$OURS/dnsstub" ./bench/dnsstub)
INBOUND=${INBOUND:-stub}
DNS_PORT=9 SKIP_NETS=
case $INBOUND in
  stub) DNS_PORT=5354;;
  closed) ;;
  skip) SKIP_NETS='"127.0.0.0/8"';;
  *) echo "INBOUND=$INBOUND: stub, closed or skip" >&2; exit 2;;
esac
# The hash comes from server/auth.HashPassword (DefaultParams) via mailctl passwd.
HASH=$(printf '%s\n' "$PASS" | "$OURS/mailctl" passwd)
PORT_OFFSET=${PORT_OFFSET:-0}
port() { echo "127.0.0.1:$(($1 + PORT_OFFSET))"; }
STORE_JSON=
case ${STORE:-embedded} in
  embedded) ;;
  postgres) [ -n "${PG_URL_FILE:-}" ] || { echo "STORE=postgres needs PG_URL_FILE" >&2; exit 2; }
    STORE_JSON="
  \"store\": {\"postgres_url_file\": \"$PG_URL_FILE\"},";;
  *) echo "STORE=$STORE: embedded or postgres" >&2; exit 2;;
esac
rm -rf "$OURS/data"
cat > "$OURS/server.json" <<JSON
{
  "format_version": 1,
  "hostname": "mail.bench.test",
  "data_dir": "$OURS/data",$STORE_JSON
  "listen": {
    "smtp": "$(port 3525)",
    "submission": "$(port 3587)",
    "submissions": "$(port 3465)",
    "imap": "$(port 3143)",
    "imaps": "$(port 3993)"
  },
  "tls": {"mode": "self-signed"},
  "domains": [{"name": "bench.test"}],
  "users": [{"address": "bench@bench.test", "password_hash": "$HASH"}],
  "inbound": {"dnsbl_zones": [], "skip_networks": [$SKIP_NETS]},
  "outbound": {"dns_servers": ["127.0.0.1:$DNS_PORT"]},
  "log_level": "info"
}
JSON
"$OURS/mailctl" serve status -config "$OURS/server.json" >/dev/null 2>&1 && {
  echo "a server already runs with $OURS/server.json" >&2; exit 1; }
[ "${PREPARE_ONLY:-0}" = 1 ] && exit 0

[ "${SKIP_SETUP:-0}" = 1 ] || "$SHARED/setup-anchors.sh"
export OURS_LABEL=${OURS_LABEL:-mailctl}
echo "# inbound checks: INBOUND=$INBOUND"

mkdir -p "$BENCH_DIR/logs"
STUB=
trap '[ -n "$STUB" ] && kill "$STUB" 2>/dev/null; wait' EXIT
if [ "$INBOUND" = stub ]; then
  "$OURS/dnsstub" -listen 127.0.0.1:5354 2>>"$BENCH_DIR/logs/dnsstub.log" &
  STUB=$!
fi
"$SHARED/run-anchors.sh" $((3525 + PORT_OFFSET)) bench@bench.test $((3143 + PORT_OFFSET)) bench@bench.test "$PASS" -- "$REPO/bench/serve-bench.sh" "$OURS"
