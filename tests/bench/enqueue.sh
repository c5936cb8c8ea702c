#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Enqueue benchmark: outbox's sendmail against the durability floor (a
# program that only reads stdin, writes, fsyncs, renames and fsyncs the
# directory) and against Postfix's sendmail (a private instance whose
# delivery is held with defer_transports = smtp), run alternately in the
# same run, 10 KB and 5 MB messages. Prints one table per size: wall time
# from fork to exit, peak RSS, the median over the floor's and over
# Postfix's.
#
#   tests/bench/enqueue.sh [BUILD_DIR] [ROUNDS]
#
# ROUNDS (default 200) for 10 KB; a quarter of it (at least 10) for 5 MB.
# Without root or without Postfix installed, the Postfix row is left out.
# Also run by tests/bench/run.sh, which installs Postfix first.
. "$(dirname "$(realpath "$0")")/lib.sh"
bench_init "${1:-}"
rounds=${2:-200}
results=${BENCH_RESULTS:-/dev/null}

mkdir -p "$W/floor-dir"
make_message 10240 "$W/10k"
make_message $((5 * 1024 * 1024)) "$W/5m"

pf_args=()
settle=()
if have_postfix; then
	pf_setup
	pf_start
	pf_args=(postfix-sendmail "/usr/sbin/sendmail -C $PF -i $RCPT")
	settle=(-w "$BENCH_DIR/pf-settle.sh $PF/spool" -b postfix-sendmail)
	echo "Postfix $(postconf -d -h mail_version): private instance in $PF, delivery held (defer_transports = smtp);"
	echo "its queue manager is left to settle, untimed, after every command."
else
	echo "Postfix: not installed or not root; its row is left out (tests/bench/run.sh installs it)."
fi
echo

for size in 10k 5m; do
	n=$rounds
	[ "$size" = 5m ] && n=$((rounds / 4 > 10 ? rounds / 4 : 10))
	echo "== enqueue, $size message, $n rounds each (queue on $(df --output=source "$W" | tail -1))"
	"$W/bin/runbench" "${settle[@]}" "$n" "$W/$size" \
		floor "$W/bin/floor $W/floor-dir" \
		outbox-sendmail "$B/src/outbox-sendmail -i $RCPT" \
		"${pf_args[@]}" | tee "$W/table"
	awk -v s="$size" 'NR > 1 { printf "enqueue.%s.%s.median_ms=%s\nenqueue.%s.%s.rss_kb=%s\n", s, $1, $3, s, $1, $5 }' \
		"$W/table" >>"$results"
	# Keep the disk from filling between sizes.
	rm -rf "$Q/msg" "$Q/state" "$W/floor-dir"/*
	mkdir -p "$Q/msg"
	[ -n "$PF" ] && postsuper -c "$PF" -d ALL >/dev/null 2>&1
	echo
done
