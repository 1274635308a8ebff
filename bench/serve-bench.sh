#!/bin/bash
# Started by run-anchors.sh (in its own process group, stopped with it):
# the server itself. Usage: serve-bench.sh DIR (holding mailctl and
# server.json, written by bench/run.sh).
set -eu
D=$1
exec "$D/mailctl" serve -config "$D/server.json"
