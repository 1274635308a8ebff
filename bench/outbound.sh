#!/bin/bash
# Outbound throughput between two mail servers on loopback, side by side:
#   mailctl -> mailctl : BenchmarkOutbound (server/queue): messages enqueued at
#                        mx.a.test (127.0.0.1), DKIM-signed (ed25519 + rsa), sent
#                        over STARTTLS to mx.b.test (127.0.0.2), durable in the
#                        store; "checked" adds iprev/SPF/DKIM/DMARC at the receiver
#                        (Knot DNS serving the records).
#   Postfix -> Postfix : two private Postfix instances (their own config, queue
#                        and data directories; the system's Postfix is untouched):
#                        smtp-source injects into P1 on 127.0.0.1, P1 relays over
#                        STARTTLS to P2 on 127.0.0.2, which delivers to a Maildir
#                        (no DKIM, no checks: Postfix has none built in).
# Throughput = messages / (first injection -> last message durable at the far end).
#
# usage: bench/outbound.sh [N]        (default N=300; run as root, Debian 12)
# needs: go, knot (the Go benchmark), postfix (smtp-source), openssl
set -euo pipefail
N=${1:-300}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "outbound.sh: run as root (Postfix instances)" >&2; exit 1; }

if [ "${SKIP_MAILCTL:-}" = "" ]; then
echo "== mailctl -> mailctl ($N messages)"
(cd "$ROOT" && go test -run '^$' -bench 'BenchmarkOutbound' -benchtime="${N}x" ./server/queue/) |
  awk '/^Benchmark/ { for (i = 1; i <= NF; i++) if ($(i) == "msgs/s") printf "  %-32s %8.1f msgs/s\n", $1, $(i-1) }'
fi

echo "== Postfix -> Postfix ($N messages)"
W=$(mktemp -d /tmp/outbound-bench.XXXXXX)
chmod 755 "$W"
P1_PORT=$((20000 + RANDOM % 10000))
P2_PORT=$((P1_PORT + 1))
cleanup() {
  for i in p1 p2; do [ -d "$W/$i/etc" ] && postfix -c "$W/$i/etc" stop >/dev/null 2>&1 || true; done
  sleep 1
  rm -rf "$W"
}
trap cleanup EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench \
  -addext "subjectAltName=DNS:mx.a.test,DNS:mx.b.test" -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
chmod 644 "$W/key.pem"
master_cf() {  # master_cf ADDR
  cat <<EOF
$1 inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
}
instance() {  # instance NAME IP PORT EXTRA-MAIN-CF
  local d=$W/$1
  mkdir -p "$d/etc" "$d/queue" "$d/data"
  chown postfix "$d/data"
  cat > "$d/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $d/queue
data_directory = $d/data
mail_owner = postfix
setgid_group = postdrop
# 127.0.0.2 is no interface address for Postfix: the listener is bound in
# master.cf and inet_interfaces only names 127.0.0.1
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
maillog_file = $d/postfix.log
maillog_file_prefixes = $d
smtpd_tls_cert_file = $W/cert.pem
smtpd_tls_key_file = $W/key.pem
smtpd_tls_security_level = may
smtp_tls_security_level = may
smtpd_relay_restrictions = permit_mynetworks, reject
$4
EOF
  master_cf "$2:$3" > "$d/etc/master.cf"
  postfix -c "$d/etc" check || { echo "postfix check failed for $1:"; tail -5 "$d/postfix.log" 2>/dev/null; exit 1; }
  postfix -c "$d/etc" start >/dev/null
}
mkdir -p "$W/mail/bob"
chown -R nobody:nogroup "$W/mail"
instance p2 127.0.0.2 "$P2_PORT" "myhostname = mx.b.test
virtual_mailbox_domains = b.test
virtual_mailbox_base = $W/mail
virtual_mailbox_maps = inline:{ bob@b.test=bob/ }
virtual_uid_maps = static:$(id -u nobody)
virtual_gid_maps = static:$(id -g nobody)"
instance p1 127.0.0.1 "$P1_PORT" "myhostname = mx.a.test
relayhost = [127.0.0.2]:$P2_PORT
default_destination_concurrency_limit = 20"
for p in "$P1_PORT@127.0.0.1" "$P2_PORT@127.0.0.2"; do
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/${p#*@}/${p%@*}") 2>/dev/null && break; sleep 0.1; done
done
start=$(date +%s.%N)
/usr/sbin/smtp-source -s 8 -m "$N" -l 3500 -f alice@a.test -t bob@b.test "127.0.0.1:$P1_PORT"
injected=$(date +%s.%N)
for _ in $(seq 1 3000); do
  n=$(find "$W/mail/bob/new" -type f 2>/dev/null | wc -l)
  [ "$n" -ge "$N" ] && break
  sleep 0.1
done
end=$(date +%s.%N)
n=$(find "$W/mail/bob/new" -type f 2>/dev/null | wc -l)
awk -v n="$n" -v N="$N" -v s="$start" -v i="$injected" -v e="$end" 'BEGIN {
  printf "  %-32s %8.1f msgs/s  (%d/%d delivered; injection %.1f msgs/s)\n", "postfix->postfix", n / (e - s), n, N, N / (i - s) }'
