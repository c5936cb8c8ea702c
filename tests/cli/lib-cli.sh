# SPDX-License-Identifier: MIT
# Helpers for the tests of the outbox command: the built outbox, outboxd and
# outbox-sendmail in the private HOME of tests/integration/lib.sh, the test
# server of tests/integration/lib-deliver.sh, and, where a test asks for it,
# a real gnome-keyring in a private D-Bus session.
#
# Every test runs inside its own `dbus-run-session` (the script re-runs
# itself there), so nothing reaches the desktop's keyring or notification
# daemon. Set CLI_KEYRING=1 before sourcing to also get an unlocked
# keyring (the test is skipped when there is none), or CLI_KEYRING=optional
# to get one where possible ($HAVE_KEYRING tells: 1 or 0).
#
# Provides, on top of lib.sh and lib-deliver.sh:
#   $OB                 the outbox command under test (from $OUTBOX_OUTBOX)
#   step NAME           names what follows, without emptying the queue
#   ob ARGS...          runs outbox; sets $rc, $T/out, $T/err (stdin: the caller's)
#   expect_ob_rc N      the last ob exited N
#   out_has ERE / err_has ERE / out_lacks ERE
#   qjson               outbox queue --json into $T/q.json (must exit 0 and parse)
#   status_of ID        the status of ID in $T/q.json ("absent" when not there)
#   expect_status ID S  ... is S
#   py EXPR             evaluates a Python expression with j = the queue JSON
#   ids_by_rcpt ADDR    IDs whose recipients include ADDR (from $T/q.json)
#   kr_lookup           the password stored for alice@gmail.com on localhost
#   kr_clear            removes it
#   fault_script JSON   the fault script for the next start_server ($T/script.json)
#   make_states         a queue with one message in each state (see there)
#   start_keyring       an unlocked keyring in this session (done for CLI_KEYRING)

if [ -z "${OUTBOX_CLI_BUS:-}" ]; then
	command -v dbus-run-session >/dev/null 2>&1 || { echo "SKIP: dbus-run-session is not installed"; exit 77; }
	export OUTBOX_CLI_BUS=1
	exec dbus-run-session -- bash "$0" "$@"
fi

. "${BASH_SOURCE%/*}/../integration/lib.sh" || exit 99
. "${BASH_SOURCE%/*}/../integration/lib-deliver.sh" || exit 99

[ -n "${OUTBOX_OUTBOX:-}" ] && [ -x "$OUTBOX_OUTBOX" ] || {
	echo "OUTBOX_OUTBOX must name the built outbox" >&2
	exit 99
}
OB=$OUTBOX_OUTBOX

# Services the bus starts on demand (the keyring daemon) get the private
# HOME too, never the real one.
if command -v dbus-update-activation-environment >/dev/null 2>&1; then
	dbus-update-activation-environment HOME XDG_RUNTIME_DIR XDG_DATA_HOME XDG_CONFIG_HOME LC_ALL ||
		{ echo "dbus-update-activation-environment failed" >&2; exit 99; }
else
	skip "dbus-update-activation-environment is not installed"
fi

# No terminal anywhere unless a test makes one with script(1).
exec </dev/null
unset NO_COLOR
export TERM=xterm

step() {
	_check=$1
	echo "--- $_check"
}

ob() {
	rc=0
	"$OB" "$@" >"$T/out" 2>"$T/err" || rc=$?
}

_show_last() {
	printf 'stdout: %s | stderr: %s' "$(head -c 400 "$T/out" | tr '\n' '|')" \
		"$(grep -v '^outboxd: ' "$T/err" | head -c 400 | tr '\n' '|')"
}

expect_ob_rc() {
	[ "$rc" -eq "$1" ] && return 0
	fail "outbox exited $rc, expected $1 ($(_show_last))"
}

out_has() {
	grep -qE -- "$1" "$T/out" && return 0
	fail "stdout does not match /$1/ ($(_show_last))"
}

out_lacks() {
	grep -qE -- "$1" "$T/out" || return 0
	fail "stdout matches /$1/ ($(_show_last))"
}

err_has() {
	grep -qE -- "$1" "$T/err" && return 0
	fail "stderr does not match /$1/ ($(_show_last))"
}

qjson() {
	local r=0
	"$OB" queue --json >"$T/q.json" 2>"$T/q.err" || r=$?
	[ "$r" -eq 0 ] || { fail "outbox queue --json exited $r: $(head -c 300 "$T/q.err")"; echo '{}' >"$T/q.json"; return 1; }
	"$SPY" -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/q.json" 2>"$T/q.perr" ||
		{ fail "outbox queue --json is not JSON: $(head -c 300 "$T/q.perr") in $(head -c 300 "$T/q.json")"; echo '{}' >"$T/q.json"; return 1; }
	return 0
}

py() {
	"$SPY" -c 'import json,sys
j = json.load(open(sys.argv[1]))
r = eval(sys.argv[2])
print(r if not isinstance(r, (list, dict)) else json.dumps(r))' "$T/q.json" "$1"
}

status_of() {
	py "([m['status'] for m in j.get('messages', []) if m['id'] == '$1'] or ['absent'])[0]"
}

ids_by_rcpt() {
	"$SPY" -c 'import json,sys
j = json.load(open(sys.argv[1]))
for m in j.get("messages", []):
    if any(r["address"] == sys.argv[2] for r in m["recipients"]):
        print(m["id"])' "$T/q.json" "$1"
}

# expect_status ID WANT: after qjson.
expect_status() {
	local got
	got=$(status_of "$1")
	[ "$got" = "$2" ] && return 0
	fail "message $1 is $got, expected $2"
}

fault_script() {
	printf '%s\n' "$1" >"$T/script.json"
}

# start_keyring: an unlocked login keyring in this D-Bus session, kept in
# $HOME; 1 (with the reason on stdout) when there can be none here.
KEYRING_PW=unlock-me
start_keyring() {
	local p
	for p in gnome-keyring-daemon secret-tool; do
		command -v "$p" >/dev/null 2>&1 || { echo "$p is not installed"; return 1; }
	done
	printf '%s' "$KEYRING_PW" | gnome-keyring-daemon --unlock --components=secrets >"$T/keyring.out" 2>&1 ||
		{ echo "gnome-keyring-daemon does not start here: $(head -c 300 "$T/keyring.out")"; return 1; }
	echo -n probe | secret-tool store --label=probe service outbox-probe 2>"$T/keyring.err" ||
		{ echo "the keyring does not take secrets here: $(head -c 300 "$T/keyring.err")"; return 1; }
	secret-tool clear service outbox-probe 2>/dev/null
	return 0
}

kr_lookup() {
	secret-tool lookup service outbox address "$ACCOUNT" host localhost 2>/dev/null
}

kr_clear() {
	secret-tool clear service outbox address "$ACCOUNT" host localhost 2>/dev/null
	return 0
}

HAVE_KEYRING=0
case ${CLI_KEYRING:-} in
1)
	why=$(start_keyring) || skip "$why"
	HAVE_KEYRING=1
	;;
optional)
	if why=$(start_keyring); then
		HAVE_KEYRING=1
	else
		echo "no keyring: $why"
	fi
	;;
esac

# The reply the fixture's server gives bad@: quotes and a backslash, to test the JSON.
BAD_REPLY='550 5.1.1 The account "bad" does not exist \ here'

# make_states: a server (unlimited faults: 451 at the end of "defer me", 550
# to <bad@) and a queue holding one message in each state:
#   $ID_QUEUED   to dave@example.com, never tried
#   $ID_DEFERRED to bob@example.com, 451 once, next try in the future
#   $ID_FAILED   to bad@example.com, 550 (its bounce report is deleted)
#   $ID_HELD     to carol@example.com, held by "outbox hold" before outboxd ran
# Leaves $T/q.json current. Returns 1 (after fail) when a state is not as planned.
make_states() {
	local bounce
	fault_script "$("$SPY" -c 'import json,sys; print(json.dumps([
	    {"on": "data-end", "match": "Subject: defer me", "reply": "451 4.3.0 Mail server temporarily rejected message."},
	    {"on": "rcpt", "match": "<bad@", "reply": sys.argv[1]}]))' "$BAD_REPLY")"
	start_server --script "$T/script.json"
	write_config
	queue_msg "defer me" bob@example.com
	queue_msg "fail me" bad@example.com
	queue_msg "hold me" carol@example.com
	qjson || return 1
	ID_HELD=$(ids_by_rcpt carol@example.com)
	"$OB" hold "$ID_HELD" >/dev/null || fail "outbox hold $ID_HELD failed"
	od_once
	queue_msg "fresh" dave@example.com
	qjson || return 1
	ID_QUEUED=$(ids_by_rcpt dave@example.com)
	ID_DEFERRED=$(ids_by_rcpt bob@example.com)
	ID_FAILED=$(ids_by_rcpt bad@example.com)
	bounce=$(ids_by_rcpt "$ACCOUNT")
	if [ -n "$bounce" ]; then
		"$OB" delete --yes "$bounce" >/dev/null || fail "outbox delete --yes $bounce (the bounce report) failed"
		qjson || return 1
	fi
	local want id
	for want in QUEUED DEFERRED FAILED HELD; do
		id=ID_$want
		id=${!id}
		if [ -z "$id" ] || [ "$(status_of "$id")" != "${want,,}" ]; then
			fail "could not make a ${want,,} message (got [$id] $(status_of "$id"); queue: $(head -c 600 "$T/q.json"))"
			return 1
		fi
	done
	return 0
}
