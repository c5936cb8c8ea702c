#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The benchmark suite: enqueue (outbox's sendmail, the durability floor,
# Postfix's sendmail), delivery (outboxd, Postfix as a relay, msmtp; over
# loopback and over a 20 ms link), one message from an idle system, and
# memory. Prints the tables, then the goals and whether they are met.
#
#   sudo tests/bench/run.sh [BUILD_DIR]        (default: build)
#
# Needs root: it installs Postfix and msmtp from Debian if they are missing,
# and builds its 20 ms link from network namespaces and TUN devices. See
# tests/bench/README.md. Not part of "meson test". About 6 to 10 minutes.
#
# Environment: BENCH_ENQUEUE_ROUNDS (200), BENCH_ROUNDS (3), BENCH_IDLE_ROUNDS (5).
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
build=$(realpath "${1:-$here/../../build}")
start=$SECONDS

if [ "$(id -u)" != 0 ]; then
	echo "tests/bench/run.sh needs root (network namespaces, TUN devices, a private Postfix instance)." >&2
	echo "Without root, tests/bench/enqueue.sh still compares outbox's sendmail with the floor." >&2
	exit 1
fi

# Postfix and msmtp from Debian, without starting any service. Postfix
# provides /usr/sbin/sendmail: it is installed only when no other program
# owns that path (another MTA, or outbox's own system-wide links).
install_packages() {
	local want=() owner
	[ -x /usr/sbin/postfix ] || want+=(postfix)
	command -v msmtp >/dev/null || want+=(msmtp)
	[ ${#want[@]} -gt 0 ] || return 0
	if [[ " ${want[*]} " == *" postfix "* ]] && { [ -e /usr/sbin/sendmail ] || [ -L /usr/sbin/sendmail ]; }; then
		owner=$(dpkg -S /usr/sbin/sendmail 2>/dev/null | cut -d: -f1 || true)
		echo "Postfix: not installed, and /usr/sbin/sendmail belongs to ${owner:-no package (a link of a local install?)};"
		echo "         installing Postfix would replace it, so the Postfix rows are skipped."
		want=("${want[@]/postfix/}")
	fi
	[ -n "${want[*]// /}" ] || return 0
	if ! command -v apt-get >/dev/null; then
		echo "no apt-get: cannot install ${want[*]}; those rows are skipped"
		return 0
	fi
	echo "installing from Debian: ${want[*]} (DEBIAN_FRONTEND=noninteractive, Postfix: \"No configuration\")"
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
	local log
	log=$(mktemp)
	# shellcheck disable=SC2068
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${want[@]} >"$log" 2>&1; then
		apt-get update >>"$log" 2>&1 || true
		# shellcheck disable=SC2068
		if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${want[@]} >>"$log" 2>&1; then
			echo "cannot install ${want[*]}; those rows are skipped. apt-get said:"
			tail -5 "$log" | sed 's/^/    /'
		fi
	fi
	rm -f "$log"
}

echo "outbox benchmark suite — $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(uname -sr), $(awk '/MemTotal/ { printf "%.0f GB RAM", $2 / 1048576 }' /proc/meminfo);" \
	"load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
[ -x "$build/src/outboxd" ] && [ -x "$build/src/outbox-sendmail" ] || {
	echo "no built outbox in $build (meson setup build && ninja -C build)" >&2
	exit 1
}
# One snapshot of the programs for the whole run (both scripts copy it again).
snap=$(mktemp -d /tmp/outbox-bench-bin.XXXXXX)
trap 'rm -rf "$snap"' EXIT
mkdir -p "$snap/src"
cp -p "$build/src/outboxd" "$build/src/outbox-sendmail" "$snap/src/"
echo "outbox: $(git -C "$here" describe --always --dirty 2>/dev/null || echo '?'), programs from $build" \
	"(outboxd built $(date -u -r "$build/src/outboxd" '+%Y-%m-%d %H:%M:%S UTC'))"
build=$snap
install_packages
if [ -x /usr/sbin/postfix ]; then echo "Postfix $(postconf -d -h mail_version 2>/dev/null)"; fi
if command -v msmtp >/dev/null; then echo "$(msmtp --version | head -1)"; fi
echo

results=$snap/results
export BENCH_RESULTS=$results

"$here/enqueue.sh" "$build" "${BENCH_ENQUEUE_ROUNDS:-200}"
"$here/delivery.sh" "$build"

# --- goals ----------------------------------------------------------------------------
declare -A R
while IFS='=' read -r k v; do
	R[$k]=$v
done <"$results"
get() { echo "${R[$1]:-?}"; }
num() { [[ $1 =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; }
ratio() {	# A B: A / B (four decimals: verdicts are decided on these, not on the two shown), or ?
	if num "$1" && num "$2"; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", a / b }'; else echo "?"; fi
}
show() {	# a ratio with two decimals
	if num "$1"; then awk -v a="$1" 'BEGIN { printf "%.2f", a }'; else echo "?"; fi
}
verdict() {	# VALUE OP LIMIT
	num "$1" || { echo "not measured"; return; }
	if awk -v v="$1" -v l="$3" "BEGIN { exit !(v $2 l) }"; then echo "met"; else echo "NOT met"; fi
}
goal() {	# TEXT MEASURED VERDICT
	printf '%-58s %-22s %s\n' "$1" "$2" "$3"
}

echo
echo "== goals"
goal "goal" "measured" "verdict"
r=$(ratio "$(get enqueue.10k.outbox-sendmail.median_ms)" "$(get enqueue.10k.postfix-sendmail.median_ms)")
goal "10 KB enqueue <= 0.25 x Postfix's sendmail" "$(show "$r") x" "$(verdict "$r" '<=' 0.25)"
r=$(ratio "$(get enqueue.10k.outbox-sendmail.median_ms)" "$(get enqueue.10k.floor.median_ms)")
goal "10 KB enqueue <= 1.5 x floor" "$(show "$r") x" "$(verdict "$r" '<=' 1.5)"
r=$(ratio "$(get enqueue.5m.outbox-sendmail.median_ms)" "$(get enqueue.5m.floor.median_ms)")
goal "5 MB enqueue <= 1.3 x floor" "$(show "$r") x" "$(verdict "$r" '<=' 1.3)"
r=$(ratio "$(get delivery.20ms.outbox.median_ms)" "$(get delivery.20ms.postfix.median_ms)")
goal "${BENCH_MESSAGES:-200} x 10 KB over 20 ms <= 0.3 x Postfix" "$(show "$r") x" "$(verdict "$r" '<=' 0.3)"
r=$(ratio "$(get delivery.20ms.outbox.median_ms)" "$(get delivery.20ms.postfix-reuse.median_ms)")
goal "  (for reference: x Postfix with TLS connection reuse)" "$(show "$r") x" "-"
c=$(get delivery.20ms.outbox.connections) a=$(get delivery.20ms.outbox.auths)
v="NOT met"
[ "$c" = 1 ] && [ "$a" = 1 ] && v=met
goal "  ... on one connection and one AUTH" "$c conn, $a AUTH" "$v"
r=$(get delivery.20ms.outbox.rt_per_msg)
goal "  ... <= 0.15 round trips per message" "$(show "$r") RT/msg" "$(verdict "$r" '<=' 0.15)"
r=$(ratio "$(get idle.20ms.outbox.median_ms)" "$(get idle.20ms.postfix.median_ms)")
goal "one message from idle <= 0.75 x Postfix (20 ms link)" "$(show "$r") x" "$(verdict "$r" '<=' 0.75)"
r=$(ratio "$(get idle.loopback.outbox.median_ms)" "$(get idle.loopback.postfix.median_ms)")
goal "one message from idle <= 0.75 x Postfix (loopback)" "$(show "$r") x" "$(verdict "$r" '<=' 0.75)"
r=$(get memory.rest.outbox.processes)
goal "no process at rest" "$r processes" "$(verdict "$r" '==' 0)"
peak=0
for k in delivery.loopback.outbox.peak_pss_kb delivery.20ms.outbox.peak_pss_kb memory.pss.1x10k_kb memory.pss.1x50m_kb; do
	v=$(get "$k")
	num "$v" && [ "$v" -gt "$peak" ] && peak=$v
done
goal "peak PSS while delivering <= 5 MB" "$peak KB" "$(verdict "$peak" '<=' 5120)"
goal "  (for reference: outboxd started, nothing to send)" "$(get memory.pss.start_kb) KB" "-"
goal "  (for reference: what delivering 1 x 10 KB adds)" "$(get memory.pss.delivery_adds_kb) KB" "-"
small=$(get memory.anon.1x10k_kb) big=$(get memory.anon.1x50m_kb)
d="?"
num "$small" && num "$big" && d=$((big - small))
goal "  ... independent of size (anon PSS, 50 MB - 10 KB < 1 MB)" "$d KB" "$(verdict "$d" '<' 1024)"
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); the whole run took $((SECONDS - start)) s"
