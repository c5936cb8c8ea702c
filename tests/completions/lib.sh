# SPDX-License-Identifier: MIT
# Shared setup for the completion tests, sourced by each (POSIX sh or bash).
#
# Provides a private HOME with a configuration and two queued messages,
# "outbox" and "outbox-sendmail" first on PATH (links to the built programs),
# and:
#   $T           scratch directory, removed on exit
#   $COMP        the completions source directory
#   $ID1 $ID2    the queue IDs of the two messages
#   check NAME / fail MSG / skip MSG / finish

set -u
LC_ALL=C
export LC_ALL

for v in OUTBOX OUTBOX_SENDMAIL; do
	eval "p=\${$v:-}"
	if [ -z "$p" ] || [ ! -x "$p" ]; then
		echo "$v must name the built program" >&2
		exit 99
	fi
done
COMP=${COMPLETIONS_DIR:-}
[ -d "$COMP" ] || { echo "COMPLETIONS_DIR must name the completions/ directory" >&2; exit 99; }

T=$(mktemp -d "${TMPDIR:-/tmp}/outbox-comp.XXXXXX") || exit 99
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM

export HOME="$T/home"
export XDG_CONFIG_HOME="$HOME/.config"
export XDG_DATA_HOME="$HOME/.local/share"
export XDG_RUNTIME_DIR="$T/run"
mkdir -p "$XDG_CONFIG_HOME/outbox" "$XDG_RUNTIME_DIR" "$T/bin"
chmod 700 "$HOME" "$XDG_RUNTIME_DIR"
printf '[account]\naddress = alice@gmail.com\n' >"$XDG_CONFIG_HOME/outbox/config"
ln -s "$OUTBOX" "$T/bin/outbox"
ln -s "$OUTBOX_SENDMAIL" "$T/bin/outbox-sendmail"
PATH="$T/bin:$PATH"
export PATH

printf 'Subject: one\n\nfirst\n' | outbox-sendmail -i bob@example.org || exit 99
printf 'Subject: two\n\nsecond\n' | outbox-sendmail -i carol@example.org || exit 99
_ids=$(outbox queue --json | grep -o '"id":"[0-9A-Z]*"' | cut -d'"' -f4)
ID1=$(printf '%s\n' "$_ids" | sed -n 1p)
ID2=$(printf '%s\n' "$_ids" | sed -n 2p)
if [ ${#ID1} -ne 16 ] || [ ${#ID2} -ne 16 ]; then
	echo "could not queue two test messages (IDs: $_ids)" >&2
	exit 99
fi

_failed=0
_check="(setup)"
check() {
	_check=$1
	echo "--- $_check"
}
fail() {
	echo "FAIL: $_check: $*" >&2
	_failed=$((_failed + 1))
	return 1
}
skip() {
	echo "SKIP: $*"
	exit 77
}
finish() {
	if [ "$_failed" -ne 0 ]; then
		echo "$_failed check(s) failed" >&2
		exit 1
	fi
	exit 0
}

# has_line TEXT WORD: TEXT has a line that is WORD, or WORD then a tab.
has_line() {
	printf '%s\n' "$1" | grep -q -x -e "$2" -e "$2	.*"
}
