#!/bin/bash
# Started by run-anchors.sh (in its own process group, stopped with it):
# the TLS proxy that gives the shared plaintext IMAP client a way in, and
# the server itself. Usage: serve-bench.sh DIR (holding mailctl, tlsproxy,
# server.json, written by bench/run.sh).
set -eu
D=$1
"$D/tlsproxy" -listen 127.0.0.1:${OURS_IMAP_PORT:-3143} -target 127.0.0.1:${OURS_IMAPS_PORT:-3993} &
exec "$D/mailctl" serve -config "$D/server.json"
