#!/bin/bash
# Memory of `mailctl serve` through the sequence of `FULL=1 bench/run.sh`
# (issue 13), ours only, without the anchors: a fresh server, an ingest of
# N messages, the INBOX emptied (STORE \Deleted + EXPUNGE), mailbox Bench
# filled with IMAP_N messages by APPEND, then the IMAP run of
# imap-fetch.py with each of IMAP_CLIENTS. Prints PSS between the steps
# and the RESULT lines (peak_pss_mib is the figure of the goal); with
# PROFILE=1, heap profiles every 0.5 s of the IMAP runs through the control
# socket, in $D/prof (go tool pprof -sample_index=inuse_space).
#
# usage: bench/imap-mem.sh      env: N=20000 IMAP_N=10000 IMAP_CLIENTS="1 4"
#        D=/var/tmp/mailctl-imapmem PROFILE=0 INBOUND=skip|stub
# Ports 127.0.0.1:4525 (SMTP) and 4143 (IMAP); the DNS stub (INBOUND=stub)
# on 5355. Everything it starts is stopped at the end.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
A=$REPO/bench/anchors
D=${D:-/var/tmp/mailctl-imapmem}
N=${N:-20000} IMAP_N=${IMAP_N:-10000} IMAP_CLIENTS=${IMAP_CLIENTS:-"1 4"}
PASS=imapmem-bench-password
mkdir -p "$D"
(cd "$REPO" && go build -o "$D/mailctl" ./cmd/mailctl && go build -o "$D/dnsstub" ./bench/dnsstub)
HASH=$(printf '%s\n' "$PASS" | "$D/mailctl" passwd)
SKIP='"127.0.0.0/8"' DNS=127.0.0.1:9
[ "${INBOUND:-skip}" = stub ] && SKIP= DNS=127.0.0.1:5355
rm -rf "$D/data" "$D/prof"
cat > "$D/server.json" <<JSON
{
  "format_version": 1,
  "hostname": "mail.bench.test",
  "data_dir": "$D/data",
  "control": "$D/control.sock",
  "listen": {"smtp": "127.0.0.1:4525", "submission": "127.0.0.1:4587", "submissions": "127.0.0.1:4465",
             "imap": "127.0.0.1:4143", "imaps": "127.0.0.1:4993"},
  "tls": {"mode": "self-signed"},
  "domains": [{"name": "bench.test"}],
  "users": [{"address": "bench@bench.test", "password_hash": "$HASH"}],
  "inbound": {"dnsbl_zones": [], "skip_networks": [$SKIP]},
  "outbound": {"dns_servers": ["$DNS"]},
  "log_level": "info"
}
JSON
PIDS=
trap 'for p in $PIDS; do kill "$p" 2>/dev/null; done; wait' EXIT
if [ "${INBOUND:-skip}" = stub ]; then
  "$D/dnsstub" -listen 127.0.0.1:5355 2>>"$D/dnsstub.log" & PIDS="$PIDS $!"
fi
"$D/mailctl" serve -config "$D/server.json" > "$D/serve.log" 2>&1 < /dev/null &
PID=$!; PIDS="$PIDS $PID"
for _ in $(seq 120); do (exec 3<>/dev/tcp/127.0.0.1/4143) 2>/dev/null && break; sleep 0.5; done
pss() { echo "PSS $1 $(python3 "$A/rss.py" snapshot "$PID" | head -1)"; }
sleep 3; pss idle
if [ "$N" -gt 0 ]; then
  IMAP_COUNT="127.0.0.1 4143 bench@bench.test $PASS INBOX" RSS_ROOTS=$PID LABEL=mailctl \
    "$A/smtp-ingest.sh" 127.0.0.1 4525 bench@bench.test "$N" 10 10240 2>&1 | grep RESULT
  sleep 3; pss after-ingest
  python3 "$A/mailcount.py" empty imap 127.0.0.1 4143 bench@bench.test "$PASS" INBOX >/dev/null
  sleep 3; pss after-empty
fi
python3 "$A/imap-fetch.py" 127.0.0.1 4143 bench@bench.test "$PASS" --n "$IMAP_N" --populate --exact \
  --clients 1 --logins 1 --label mailctl 2>&1 | grep -E '^POPULATE|rror'
sleep 3; pss after-populate
for c in $IMAP_CLIENTS; do
  S=
  if [ "${PROFILE:-0}" = 1 ]; then
    mkdir -p "$D/prof"
    ( i=0; while :; do i=$((i+1)); sleep 0.5
        curl -s --unix-socket "$D/control.sock" http://x/debug/pprof/heap > "$D/prof/c$c-$i.pb.gz"; done ) &
    S=$!
  fi
  python3 "$A/imap-fetch.py" 127.0.0.1 4143 bench@bench.test "$PASS" --n "$IMAP_N" --clients "$c" \
    --rss-roots "$PID" --label mailctl 2>&1 | grep -E '^RESULT|rror'
  [ -n "$S" ] && kill "$S" 2>/dev/null
  sleep 3; pss "after-imap-$c"
done
