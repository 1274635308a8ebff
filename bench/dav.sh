#!/bin/bash
# Benchmark of CalDAV/CardDAV servers (issue 19): a 5 000-event calendar and
# a 5 000-contact address book, full REPORT (calendar-query /
# addressbook-query returning all data, best of 3 and the first one) and a
# sync-collection after 10 changes, with resident memory; the bundled
# server's CalDAV/CardDAV (server/dav, in a process of its own, its store
# written beforehand by a seeding process) and Radicale (Debian radicale,
# internal/testenv, its files written for it), one after the other in the
# same run. "extra resident memory" is what the benchmark's requests add
# to the server idle with its data (bench/davbench's package doc).
#
# usage: bench/dav.sh                      5 000 events and 5 000 contacts
#        DAVBENCH_OBJECTS=500 bench/dav.sh  smaller
#        DAVBENCH_TIMEOUT=90m bench/dav.sh  on a slow machine (default 40m)
#        DAVBENCH_SKIP_RADICALE=1 bench/dav.sh   the bundled server alone (a minute)
#        DAVBENCH_INPROCESS=1 bench/dav.sh       the bundled server in the benchmark process
# needs: go, radicale (apt-get install -y radicale)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
command -v radicale >/dev/null || { echo "dav.sh: radicale missing (apt-get install -y radicale)" >&2; exit 1; }
cd "$REPO"
echo "## CalDAV/CardDAV: ${DAVBENCH_OBJECTS:-5000} events and contacts (bench/dav.sh), $(date -u '+%Y-%m-%d %H:%M') UTC"
echo
echo '```'
LOG=$(mktemp /tmp/davbench.XXXXXX.log)
status=0
go test -count=1 -run '^$' -bench BenchmarkDAV -benchtime 1x -timeout "${DAVBENCH_TIMEOUT:-40m}" ./bench/davbench >"$LOG" 2>&1 || status=$?
grep -E '^davbench: ' "$LOG" | sed -E 's/^davbench: //'
echo '```'
if [ "$status" != 0 ]; then
  echo "dav.sh: the benchmark failed (exit $status); its output is in $LOG" >&2
  exit "$status"
fi
rm -f "$LOG"
