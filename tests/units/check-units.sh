#!/usr/bin/env bash
# The user units pass systemd-analyze verify, and outbox.service's exposure
# as rated by systemd-analyze security is 2.0 or lower.
#   check-units.sh BUILD_UNIT_DIR SOURCE_UNIT_DIR
set -euo pipefail
built=$1 src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze is not installed"; exit 77; }

mkdir -m 0700 "$work/run"
export XDG_RUNTIME_DIR=$work/run
cp "$built/outbox.service" "$src/outbox.socket" "$src/outbox.timer" "$work/"
# verify wants the ExecStart binary to exist: point it at a stand-in for this check only.
sed -i "s|^ExecStart=.*|ExecStart=/bin/true|" "$work/outbox.service"

out=$(cd "$work" && systemd-analyze verify --user --man=no ./outbox.socket ./outbox.service ./outbox.timer 2>&1) || {
	echo "FAIL: systemd-analyze verify:"; echo "$out"; exit 1; }
if [ -n "$out" ]; then
	echo "FAIL: systemd-analyze verify complained:"; echo "$out"; exit 1
fi
echo "ok: systemd-analyze verify --user is clean"

line=$(cd "$work" && systemd-analyze security --offline=true --user ./outbox.service 2>&1 | grep 'Overall exposure level')
echo "$line"
level=$(sed -E 's/.*: ([0-9.]+) .*/\1/' <<<"$line")
awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }' || { echo "FAIL: exposure $level is above 2.0"; exit 1; }
echo "ok: exposure $level <= 2.0"

grep -q '^ListenStream=%t/outbox.sock$' "$src/outbox.socket" || { echo "FAIL: ListenStream"; exit 1; }
grep -q '^SocketMode=0600$' "$src/outbox.socket" || { echo "FAIL: SocketMode"; exit 1; }
grep -q '^Type=notify$' "$built/outbox.service" || { echo "FAIL: Type=notify"; exit 1; }
echo "ok: socket 0600 at %t/outbox.sock, Type=notify"
