#!/usr/bin/env bash
# plan-scale.sh: mailctl plan/apply on N generated domains, beside
# dnscontrol's BIND provider on the same zone files, in the same run.
#
#   bench/plan-scale.sh                 # N=200 and N=5000 (10 users each)
#   SIZES="200:0 5000:10" RUNS=3 bench/plan-scale.sh
#   KEEP=1 bench/plan-scale.sh          # keep the work directory
#   BASELINE=c0b308c bench/plan-scale.sh  # also mailctl at that revision
#
# Each size is N domains and U users per domain (SIZES="N:U ..."). For each:
#   plan   the zone files already hold every record but one per domain (the
#          DMARC policy differs): `mailctl plan -target dns` against
#          `dnscontrol preview`, both reading the same files;
#   apply  (only sizes with APPLY=1 or N <= 200) every zone is new:
#          `mailctl apply -target dns` against `dnscontrol push`, each
#          writing its own copy of the zones;
#   validate / fmt -check of the generated configuration (mailctl only).
# Wall time, CPU time (user+sys) and peak RSS come from GNU time; medians of
# RUNS runs. dnscontrol v4.36.1 is built from the Go module proxy into the
# work directory unless DNSCONTROL points at a binary (DNSCONTROL=none: skip
# it), and left out, with a note, when it cannot be had.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZES=${SIZES:-"200:0 5000:10"}
RUNS=${RUNS:-3}
WORK=$(mktemp -d /tmp/plan-scale.XXXXXX)
if [[ -z ${KEEP:-} ]]; then trap 'rm -rf "$WORK"' EXIT; else echo "work directory: $WORK" >&2; fi

TIME=/usr/bin/time
[[ -x $TIME ]] || { echo "plan-scale: GNU time (/usr/bin/time) is needed: apt-get install time" >&2; exit 1; }

echo "building mailctl..." >&2
(cd "$ROOT" && go build -o "$WORK/mailctl" ./cmd/mailctl)
MAILCTL=$WORK/mailctl
# BASELINE=REV measures mailctl at git revision REV too ("mailctl@REV"),
# the before of a change, in the same run.
OLD=
if [[ -n ${BASELINE:-} ]]; then
	echo "building mailctl at $BASELINE..." >&2
	mkdir -p "$WORK/baseline"
	git -C "$ROOT" archive "$BASELINE" | tar -x -C "$WORK/baseline"
	(cd "$WORK/baseline" && go build -o "$WORK/mailctl-old" ./cmd/mailctl)
	OLD=$WORK/mailctl-old
fi

DNSC=${DNSCONTROL:-}
if [[ $DNSC == none ]]; then
	DNSC=
	echo "plan-scale: DNSCONTROL=none: measuring mailctl alone" >&2
elif [[ -z $DNSC ]]; then
	echo "building dnscontrol v4.36.1 (a few minutes the first time)..." >&2
	mkdir -p "$WORK/dnsc-build"
	printf 'module dnscbuild\n\ngo 1.25\n\nrequire github.com/StackExchange/dnscontrol/v4 v4.36.1\n' >"$WORK/dnsc-build/go.mod"
	# `go install ...@v4.36.1` asks the proxy for the module's version list,
	# which it refuses: build it from a module that requires it instead.
	if (cd "$WORK/dnsc-build" && go build -mod=mod -o "$WORK/dnscontrol" github.com/StackExchange/dnscontrol/v4) >"$WORK/dnsc-build.log" 2>&1; then
		DNSC=$WORK/dnscontrol
	else
		echo "plan-scale: dnscontrol could not be built (see below): measuring mailctl alone" >&2
		tail -3 "$WORK/dnsc-build.log" >&2
	fi
fi

# gen DIR N U: mail.hcl, dnsconfig.js, creds.json and zone files (zones/,
# the state before the one change per domain) in DIR.
gen() {
	local dir=$1 n=$2 u=$3
	mkdir -p "$dir/zones"
	awk -v n="$n" -v u="$u" -v dir="$dir" 'BEGIN {
		hcl = dir "/mail.hcl"; js = dir "/dnsconfig.js"
		printf "provider \"zonefile\" \"z\" {\n  dir = \"zones\"\n}\n\n" > hcl
		printf "server \"mx1\" {\n  hostname = \"mx1.d0.test\"\n  ipv4     = \"127.0.0.1\"\n  local {\n    dir = \".mailctl\"\n  }\n  tls {\n    self_signed = true\n  }\n}\n" > hcl
		printf "var bind = NewDnsProvider(\"bind\");\nvar none = NewRegistrar(\"none\");\nDEFAULTS(DefaultTTL(3600));\n" > js
		hash = "$argon2id$v=19$m=65536,t=3,p=2$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
		for (i = 0; i < n; i++) {
			d = "d" i ".test"
			printf "\ndomain \"%s\" {\n  dns    = provider.zonefile.z\n  server = server.mx1\n  dmarc {\n    policy = \"quarantine\"\n  }\n}\n", d > hcl
			for (j = 0; j < u; j++)
				printf "\nuser \"u%d@%s\" {\n  name          = \"User %d\"\n  password_hash = \"%s\"\n}\n", j, d, j, hash > hcl
			printf "D(\"%s\", none, DnsProvider(bind),\n", d > js
			if (i == 0) printf "  A(\"mx1\", \"127.0.0.1\"),\n" > js
			printf "  MX(\"@\", 10, \"mx1.d0.test.\"),\n  TXT(\"@\", \"v=spf1 ip4:127.0.0.1 ~all\"),\n  TXT(\"_dmarc\", \"v=DMARC1; p=quarantine\"),\n" > js
			printf "  SRV(\"_imap._tcp\", 10, 1, 143, \"mx1.d0.test.\"),\n  SRV(\"_imaps._tcp\", 0, 1, 993, \"mx1.d0.test.\"),\n" > js
			printf "  SRV(\"_submission._tcp\", 10, 1, 587, \"mx1.d0.test.\"),\n  SRV(\"_submissions._tcp\", 0, 1, 465, \"mx1.d0.test.\"),\n" > js
			printf "  CNAME(\"autoconfig\", \"mx1.d0.test.\"),\n  CNAME(\"autodiscover\", \"mx1.d0.test.\")\n);\n" > js
			z = dir "/zones/" d ".zone"
			printf "; zone %s, written by mailctl\n$ORIGIN %s.\n", d, d > z
			printf "@\t3600\tIN\tSOA\tns1.%s. hostmaster.%s. 2026010100 3600 900 1209600 300\n@\t3600\tIN\tNS\tns1.%s.\n", d, d, d > z
			printf "@\t3600\tIN\tMX\t10 mx1.d0.test.\n@\t3600\tIN\tTXT\t\"v=spf1 ip4:127.0.0.1 ~all\"\n_dmarc\t3600\tIN\tTXT\t\"v=DMARC1; p=none\"\n" > z
			printf "_imap._tcp\t3600\tIN\tSRV\t10 1 143 mx1.d0.test.\n_imaps._tcp\t3600\tIN\tSRV\t0 1 993 mx1.d0.test.\n" > z
			printf "_submission._tcp\t3600\tIN\tSRV\t10 1 587 mx1.d0.test.\n_submissions._tcp\t3600\tIN\tSRV\t0 1 465 mx1.d0.test.\n" > z
			printf "autoconfig\t3600\tIN\tCNAME\tmx1.d0.test.\nautodiscover\t3600\tIN\tCNAME\tmx1.d0.test.\n" > z
			if (i == 0) printf "mx1\t3600\tIN\tA\t127.0.0.1\n" > z
			close(z)
		}
	}'
	printf '{"bind": {"TYPE": "BIND", "directory": "zones"}, "none": {"TYPE": "NONE"}}\n' >"$dir/creds.json"
}

# measure LABEL DIR CMD...: runs CMD in DIR under GNU time; prints
# "LABEL wall cpu rss_mib exit".
measure() {
	local label=$1 dir=$2; shift 2
	local rc=0
	(cd "$dir" && $TIME -o "$WORK/time" -f '%e %U %S %M' "$@" >"$WORK/out" 2>&1) || rc=$?
	read -r wall usr sys rss <<<"$(tail -1 "$WORK/time")"
	awk -v l="$label" -v w="$wall" -v u="$usr" -v s="$sys" -v r="$rss" -v rc="$rc" 'BEGIN { printf "%s %.2f %.2f %.1f %s\n", l, w, u + s, r / 1024, rc }'
}

# median of the values in column COL of the lines labelled LABEL in FILE.
median() {
	awk -v l="$2" -v c="$3" '$1 == l { print $c }' "$1" | sort -g | awk '{ v[n++] = $1 } END { if (!n) print "-"; else print v[int((n - 1) / 2)] }'
}

for size in $SIZES; do
	n=${size%%:*} u=${size##*:}
	base=$WORK/n$n
	echo "generating $n domains, $u users each..." >&2
	gen "$base" "$n" "$u"
	res=$WORK/res-$n
	: >"$res"
	for ((r = 1; r <= RUNS; r++)); do
		measure "mailctl-plan" "$base" "$MAILCTL" plan -target dns -no-color >>"$res"
		measure "mailctl-validate" "$base" "$MAILCTL" validate -no-color >>"$res"
		measure "mailctl-fmt-check" "$base" "$MAILCTL" fmt -check >>"$res"
		if [[ -n $OLD ]]; then
			measure "baseline-plan" "$base" "$OLD" plan -target dns -no-color >>"$res"
			measure "baseline-validate" "$base" "$OLD" validate -no-color >>"$res"
			measure "baseline-fmt-check" "$base" "$OLD" fmt -check >>"$res"
		fi
		if [[ -n $DNSC ]]; then
			measure "dnscontrol-preview" "$base" "$DNSC" preview >>"$res"
		fi
		if [[ ${APPLY:-} == 1 || $n -le 200 ]]; then
			for who in mailctl dnscontrol baseline; do
				[[ $who == dnscontrol && -z $DNSC ]] && continue
				[[ $who == baseline && -z $OLD ]] && continue
				a=$base/apply-$who
				rm -rf "$a"; mkdir -p "$a/zones"
				cp "$base/mail.hcl" "$base/dnsconfig.js" "$base/creds.json" "$a/"
				if [[ $who == mailctl ]]; then
					measure "mailctl-apply" "$a" "$MAILCTL" apply -auto-approve -verify=false -target dns -no-color >>"$res"
				elif [[ $who == baseline ]]; then
					measure "baseline-apply" "$a" "$OLD" apply -auto-approve -verify=false -target dns -no-color >>"$res"
				else
					measure "dnscontrol-push" "$a" "$DNSC" push >>"$res"
				fi
			done
		fi
	done
	echo "== $n domains, $u users each; medians of $RUNS runs (wall s, CPU s, peak RSS MiB, exit codes)${BASELINE:+; baseline = $BASELINE}"
	for l in mailctl-plan baseline-plan dnscontrol-preview mailctl-apply baseline-apply dnscontrol-push mailctl-validate baseline-validate mailctl-fmt-check baseline-fmt-check; do
		w=$(median "$res" $l 2)
		[[ $w == - ]] && continue
		printf '%-20s wall %6s  cpu %6s  rss %7s  rc %s\n' "$l" "$w" "$(median "$res" $l 3)" "$(median "$res" $l 4)" "$(awk -v l=$l '$1 == l { printf "%s", $5 }' "$res")"
	done
	pw=$(median "$res" mailctl-plan 2) dw=$(median "$res" dnscontrol-preview 2)
	if [[ $dw != - ]]; then
		awk -v a="$pw" -v b="$dw" 'BEGIN { printf "plan / preview wall: %.2f\n", a / b }'
	fi
	aw=$(median "$res" mailctl-apply 2) pw2=$(median "$res" dnscontrol-push 2)
	if [[ $aw != - && $pw2 != - ]]; then
		awk -v a="$aw" -v b="$pw2" 'BEGIN { printf "apply / push wall: %.2f\n", a / b }'
	fi
done
