#!/bin/bash
# Benchmark of `mailctl migrate` beside mbsync (Debian isync), both copying
# the same Gmail-like mailbox from a private Dovecot (Debian dovecot-imapd,
# internal/testenv) over implicit TLS into a fresh bundled server
# (server/store + server/imap, in process), in the same run: messages/s,
# MB/s (bytes as stored by the target) and the ratio mailctl/mbsync.
#
# mbsync copies every folder but Starred and Important, with no label
# dedupe: it also copies All Mail's copies of labelled messages, so it moves
# more messages than migrate does; compare the rates.
#
# usage: bench/migrate.sh                   10 000 messages + 5 and 25 MB attachments
#        MESSAGES=2000 bench/migrate.sh      smaller
#        RUNS=3 bench/migrate.sh             repeat (go test -count)
# needs: go, dovecot-imapd, isync (apt-get install -y dovecot-imapd isync)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
MESSAGES=${MESSAGES:-10000}
RUNS=${RUNS:-1}
for bin in /usr/sbin/dovecot mbsync; do
  command -v "$bin" >/dev/null || { echo "migrate.sh: $bin missing (apt-get install -y dovecot-imapd isync)" >&2; exit 1; }
done
cd "$REPO"
echo "## mailctl migrate vs mbsync ($MESSAGES messages + 5 and 25 MB attachments), $(date -u '+%Y-%m-%d %H:%M') UTC"
echo
echo '```'
MAILCTL_MIGRATE_MESSAGES=$MESSAGES go test -count="$RUNS" -run '^$' -bench BenchmarkMigrateVsMbsync -benchtime 1x -timeout 60m ./plan/migrate 2>&1 |
  grep -E 'Benchmark|bench_test.go' | sed -E 's/^ +bench_test.go:[0-9]+: //'
echo '```'
