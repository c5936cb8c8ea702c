#!/usr/bin/env bash
# Enqueue benchmark: outbox's sendmail against the durability floor (a
# program that only reads stdin, writes, fsyncs, renames and fsyncs the
# directory), run alternately in the same run, 10 KB and 5 MB messages.
#
#   tests/bench/enqueue.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail
build=$(realpath "${1:-build}")
rounds=${2:-200}
here=$(dirname "$(realpath "$0")")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cc -O2 -o "$work/floor" "$here/floor.c"
cc -O2 -o "$work/runbench" "$here/runbench.c"

export HOME=$work/home XDG_DATA_HOME=$work/data XDG_CONFIG_HOME=$work/config XDG_RUNTIME_DIR=$work/run
mkdir -p "$HOME" "$XDG_DATA_HOME" "$XDG_CONFIG_HOME/outbox" "$XDG_RUNTIME_DIR" "$work/floor-dir"
printf '[account]\naddress = bench@example.org\n' > "$XDG_CONFIG_HOME/outbox/config"

make_message() {	# SIZE FILE
	{
		printf 'From: bench@example.org\nTo: someone@example.org\nSubject: bench\n\n'
		head -c $(($1 * 3 / 4)) /dev/urandom | base64 -w 76
	} > "$2"
	truncate -s "$1" "$2"
}
make_message 10240 "$work/10k"
make_message $((5 * 1024 * 1024)) "$work/5m"

for size in 10k 5m; do
	n=$rounds
	[ "$size" = 5m ] && n=$((rounds / 4 > 10 ? rounds / 4 : 10))
	echo "== $size message, $n rounds each (queue on $(df --output=source "$work" | tail -1))"
	"$work/runbench" "$n" "$work/$size" \
		floor "$work/floor $work/floor-dir" \
		outbox-sendmail "$build/src/outbox-sendmail -i someone@example.org"
	# Keep the disk from filling between sizes.
	rm -rf "$XDG_DATA_HOME/outbox/msg" "$work/floor-dir"/*
	mkdir -p "$XDG_DATA_HOME/outbox/msg"
	echo
done
