# SPDX-License-Identifier: MIT
# Shared helpers for the integration tests: each test runs the built
# outbox-sendmail the way mail clients and system programs do, in a private
# HOME, and looks at the queue files it leaves.
#
# Sourced by every test script. Provides:
#   $SM         the outbox-sendmail under test (from $OUTBOX_SENDMAIL)
#   $T          a private scratch directory, removed on exit
#   $Q          the queue directory ($XDG_DATA_HOME/outbox)
#   check NAME  starts a check: empties the queue and names what follows
#   fail MSG    records a failure of the current check (the script goes on)
#   finish      exits 1 when any check failed, else 0
#   skip MSG    exits 77 (the test is skipped) with a reason

set -u
LC_ALL=C
export LC_ALL

if [ -z "${OUTBOX_SENDMAIL:-}" ] || [ ! -x "$OUTBOX_SENDMAIL" ]; then
	echo "OUTBOX_SENDMAIL must name the built outbox-sendmail" >&2
	exit 99
fi
SM=$OUTBOX_SENDMAIL

T=$(mktemp -d "${TMPDIR:-/tmp}/outbox-it.XXXXXX") || exit 99
chmod 755 "$T"
_cleanup_hooks=()
_cleanup() {
	local h
	for h in "${_cleanup_hooks[@]}"; do
		eval "$h" || :
	done
	rm -rf "$T"
}
trap _cleanup EXIT
trap 'exit 130' INT TERM

# on_exit CMD: run CMD (before $T goes) when the script ends, however it ends.
on_exit() {
	_cleanup_hooks+=("$1")
}

export HOME=$T/home
export XDG_DATA_HOME=$HOME/.local/share
export XDG_CONFIG_HOME=$HOME/.config
export XDG_RUNTIME_DIR=$T/run
unset XDG_STATE_HOME XDG_CACHE_HOME MAILRC NEOMUTT MUTT EMAIL REPLYTO
mkdir -p "$HOME" "$XDG_CONFIG_HOME/outbox" "$XDG_RUNTIME_DIR"
chmod 700 "$HOME" "$XDG_RUNTIME_DIR"
printf '[account]\naddress = alice@gmail.com\n' >"$XDG_CONFIG_HOME/outbox/config"
Q=$XDG_DATA_HOME/outbox

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

_failed=0
_check="(setup)"

check() {
	_check=$1
	rm -rf "$Q"
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
	echo "all checks passed"
	exit 0
}

# need PROGRAM...: skip the whole test when a client program is not installed.
need() {
	local p
	for p; do
		command -v "$p" >/dev/null 2>&1 || skip "$p is not installed"
	done
}

# run [ARGS...] < input: runs outbox-sendmail; sets $rc, $T/out, $T/err.
run() {
	rc=0
	"$SM" "$@" >"$T/out" 2>"$T/err" || rc=$?
}

# expect_rc N: the last run exited N.
expect_rc() {
	[ "$rc" -eq "$1" ] && return 0
	fail "exit status $rc, expected $1 (stderr: $(head -c 300 "$T/err"))"
}

# expect_ok: the last run exited 0 and said nothing on stderr.
expect_ok() {
	expect_rc 0 || return 1
	[ -s "$T/err" ] && { fail "unexpected stderr: $(head -c 300 "$T/err")"; return 1; }
	return 0
}

# expect_one_error_line: stderr holds exactly one non-empty line.
expect_one_error_line() {
	local n
	n=$(wc -l <"$T/err")
	if [ "$n" -ne 1 ] || [ "$(tail -c 1 "$T/err" | od -An -c | tr -d ' ')" != '\n' ] ||
	   [ "$(wc -c <"$T/err")" -le 1 ]; then
		fail "stderr is not one line: $(od -c "$T/err" | head -5)"
		return 1
	fi
}

# msg_ids: the queued message IDs (names in msg/), one per line, sorted.
msg_ids() {
	[ -d "$Q/msg" ] || return 0
	(cd "$Q/msg" && ls -A | LC_ALL=C sort)
}

# msg_count: how many files msg/ holds.
msg_count() {
	msg_ids | wc -l
}

# expect_count N: msg/ holds exactly N messages.
expect_count() {
	local n
	n=$(msg_count)
	[ "$n" -eq "$1" ] && return 0
	fail "queue holds $n message(s), expected $1"
}

# expect_empty_queue: nothing in msg/ (the queue may not exist at all).
expect_empty_queue() {
	expect_count 0
}

# expect_no_tmp: nothing left in tmp/.
expect_no_tmp() {
	[ -d "$Q/tmp" ] || return 0
	[ -z "$(ls -A "$Q/tmp")" ] && return 0
	fail "tmp/ is not empty: $(ls -A "$Q/tmp" | head -5 | tr '\n' ' ')"
}

# single_msg: sets $M to the path of the one queued message; fails otherwise.
single_msg() {
	local ids
	M=
	ids=$(msg_ids)
	if [ -z "$ids" ] || [ "$(printf '%s\n' "$ids" | wc -l)" -ne 1 ]; then
		fail "expected one queued message, found: [$(printf '%s' "$ids" | tr '\n' ' ')]"
		return 1
	fi
	M=$Q/msg/$ids
}

# envelope FILE: the envelope lines of a queue file (up to the blank line).
envelope() {
	sed -n '/^$/q;p' "$1"
}

# env_values FILE KEY: the values of KEY in the envelope, one per line.
env_values() {
	envelope "$1" | sed -n "s/^$2 //p"
}

# body FILE > OUT: the message bytes of a queue file, exactly.
body() {
	local n off
	n=$(sed -n '/^$/{=;q}' "$1")
	[ -n "$n" ] || { fail "$1: no end of envelope"; return 1; }
	off=$(head -n "$n" "$1" | wc -c)
	tail -c +"$((off + 1))" "$1"
}

# expect_env FILE KEY VALUE...: the envelope has exactly these values for KEY, in order.
expect_env() {
	local f=$1 key=$2 got want
	shift 2
	got=$(env_values "$f" "$key")
	want=$(if [ $# -gt 0 ]; then printf '%s\n' "$@"; fi)
	[ "$got" = "$want" ] && return 0
	fail "envelope $key: got [$(printf '%s' "$got" | tr '\n' '|')], expected [$(printf '%s' "$want" | tr '\n' '|')]"
}

# expect_body FILE EXPECTED: the message bytes of queue file FILE equal file EXPECTED.
expect_body() {
	body "$1" >"$T/body.got" || return 1
	cmp -s "$T/body.got" "$2" && return 0
	fail "message bytes differ from $(basename "$2") ($(wc -c <"$T/body.got") vs $(wc -c <"$2") bytes): $(cmp "$T/body.got" "$2" 2>&1 | head -1)"
}

# expect_envelope_sane FILE: the envelope is well formed.
expect_envelope_sane() {
	local first
	first=$(head -n 1 "$1")
	[ "$first" = "outbox-queue 1" ] || { fail "envelope starts with [$first]"; return 1; }
	envelope "$1" | grep -q '^arrival [0-9][0-9]*$' || { fail "envelope has no arrival"; return 1; }
	envelope "$1" | grep -q '^user .' || { fail "envelope has no user"; return 1; }
	envelope "$1" | grep -q '^rcpt .' || { fail "envelope has no rcpt"; return 1; }
	return 0
}

# argv_logger NAME: a wrapper script $T/NAME that records its argv (one word
# per line, in $T/NAME.argv, appended per call with a "==" separator) and
# runs outbox-sendmail; prints its path.
argv_logger() {
	local w=$T/$1
	cat >"$w" <<EOF
#!/bin/sh
{ echo ==; printf '%s\n' "\$@"; } >>"$T/$1.argv"
exec "$SM" "\$@"
EOF
	chmod 755 "$w"
	printf '%s\n' "$w"
}

# expect_argv NAME WORD...: the last call of logger NAME got exactly these words.
expect_argv() {
	local name=$1 got want
	shift
	got=$(awk '/^==$/{b=""; next} {b=b $0 "\n"} END{printf "%s", b}' "$T/$name.argv" 2>/dev/null)
	want=$(printf '%s\n' "$@")
	[ "$got" = "$want" ] && return 0
	fail "the client called sendmail with [$(printf '%s' "$got" | tr '\n' ' ')], expected [$(printf '%s' "$want" | tr '\n' ' ')]"
}
