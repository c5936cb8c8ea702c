#!/bin/sh
# SPDX-License-Identifier: MIT
# Renders each generated man page as a reader would see it at 80 columns,
# with groff's warnings on, and fails on any warning or non-zero exit.
# Usage: render-man.sh PAGE...   (exit 77: man is not installed)
set -u

if ! command -v man >/dev/null 2>&1; then
	echo "SKIP: man is not installed"
	exit 77
fi
[ $# -gt 0 ] || { echo "usage: $0 PAGE..." >&2; exit 99; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/outbox-man.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
failed=0
for page in "$@"; do
	name=${page##*/}
	if [ ! -s "$page" ]; then
		echo "FAIL: $name: missing or empty"
		failed=1
		continue
	fi
	MANWIDTH=80 \
		man --warnings -l "$page" >"$tmp/out" 2>"$tmp/err" </dev/null
	rc=$?
	if [ "$rc" -ne 0 ] || [ -s "$tmp/err" ]; then
		echo "FAIL: $name: man exited $rc; its warnings:"
		sed 's/^/  /' "$tmp/err"
		failed=1
		continue
	fi
	# The page says what it is: its name in the header and a NAME section.
	if ! grep -q '^NAME' "$tmp/out"; then
		echo "FAIL: $name: no NAME section in the rendered page"
		failed=1
		continue
	fi
	echo "ok: $name ($(wc -l <"$tmp/out") lines)"
done
exit $failed
