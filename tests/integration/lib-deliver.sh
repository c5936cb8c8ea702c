# SPDX-License-Identifier: MIT
# Helpers for the delivery tests: the built outboxd against the scriptable
# TLS test server (tests/server/smtpd.py), in the private HOME of lib.sh.
#
# Sourced after lib.sh. Provides:
#   $OD            the outboxd under test (from $OUTBOX_OUTBOXD)
#   $ACCOUNT, $PW  the account and its password (the server checks both)
#   $CERTS         a directory with ca.pem, server.pem, server.key
#   gen_certs DIR [--wrong-name|--self-signed|--expired]
#   start_server [serve options...]   sets $PORT, $SDIR ($SDIR/log, $SDIR/mail)
#   stop_server                       stops the last one started
#   free_port                         a loopback port nobody listens on
#   write_config [section.key=value...]   the config; "key=" drops a default
#   od_once                           outboxd --once; $od_rc, $T/od.err
#   queue_msg SUBJECT [sendmail args...]  queues a small message
#   force_due                         every deferred message due now
#   srv_count REGEX                   lines of the server log matching
#   stored [REGEX]                    .eml files in the maildir (matching)
#   has_stored N [REGEX]              at least N of them (for wait_for)
#   rcpt_deliveries ADDR              how often ADDR was a RCPT of a stored message
#   state_of ID / state_all           the state file(s)
#   set_mode chunking|data            $MODE_ARGS for start_server: the pipelined
#                                     BDAT path (Gmail offers CHUNKING) or DATA

[ -n "${OUTBOX_OUTBOXD:-}" ] && [ -x "$OUTBOX_OUTBOXD" ] || {
	echo "OUTBOX_OUTBOXD must name the built outboxd" >&2
	exit 99
}
OD=$OUTBOX_OUTBOXD
SMTPD=$(cd "${BASH_SOURCE%/*}/../server" && pwd)/smtpd.py
[ -x /usr/bin/python3 ] || skip "/usr/bin/python3 is needed for the test server"
SPY=/usr/bin/python3

ACCOUNT=alice@gmail.com
PW=tQ9-zebra-5521-Vq
PWCMD="echo $PW"

# gen_certs DIR [variant]: a throwaway CA and a server certificate.
gen_certs() {
	[ -s "$1/server.pem" ] && return 0
	"$SPY" "$SMTPD" gen-certs "$@" || { echo "gen-certs $* failed" >&2; exit 99; }
}
CERTS=$T/certs
gen_certs "$CERTS"

_srv_pids=()
_od_pids=()
_kill_all() {
	local p
	for p in "${_od_pids[@]}" "${_srv_pids[@]}"; do
		{ kill -9 "$p" && wait "$p"; } 2>/dev/null
	done
	return 0
}
on_exit _kill_all

# wait_for SECONDS CMD...: polls CMD every 0.1 s; 0 once it succeeds, 1 on timeout.
wait_for() {
	local end=$((SECONDS + $1))
	shift
	while ! "$@"; do
		[ "$SECONDS" -ge "$end" ] && return 1
		sleep 0.1
	done
	return 0
}

_srv_n=0
# start_server [options]: a server with the account, the default certificates
# and a log; --cert-dir, --user, --password given here override them.
start_server() {
	local certs=$CERTS user=$ACCOUNT pass=$PW a args=()
	_srv_n=$((_srv_n + 1))
	SDIR=$T/srv$_srv_n
	mkdir -p "$SDIR"
	while [ $# -gt 0 ]; do
		case $1 in
		--cert-dir) certs=$2; shift 2 ;;
		--user) user=$2; shift 2 ;;
		--password) pass=$2; shift 2 ;;
		*) args+=("$1"); shift ;;
		esac
	done
	[ -n "$user" ] && args+=(--user "$user" --password "$pass")
	"$SPY" "$SMTPD" serve --cert-dir "$certs" --maildir "$SDIR/mail" --log "$SDIR/log" \
		--port-file "$SDIR/port" --timeout 30 "${args[@]}" >"$SDIR/out" 2>"$SDIR/err" &
	SRV_PID=$!
	_srv_pids+=("$SRV_PID")
	if ! wait_for 10 test -s "$SDIR/port"; then
		echo "the test server did not start: $(cat "$SDIR/err")" >&2
		exit 99
	fi
	PORT=$(cat "$SDIR/port")
	touch "$SDIR/log"
}

stop_server() {
	kill "$SRV_PID" 2>/dev/null
	wait "$SRV_PID" 2>/dev/null
	return 0
}

# free_port: a loopback port that was just free (a server bound it, then left).
free_port() {
	"$SPY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# write_config [section.key=value...]: the account on the test server; an
# argument replaces a default, "section.key=" removes it.
write_config() {
	local -A v=(
		[account.address]=$ACCOUNT
		[account.host]=localhost
		[account.port]=${PORT:-465}
		[account.ca-file]=$CERTS/ca.pem
		[account.password-command]=$PWCMD
		[delivery.timeout]=3s
	)
	local -a order=(account.address account.host account.port account.ca-file account.password-command delivery.timeout)
	local a k sec
	for a; do
		k=${a%%=*}
		[ -n "${v[$k]+x}" ] || order+=("$k")
		v[$k]=${a#*=}
	done
	{
		for sec in account delivery aliases; do
			echo "[$sec]"
			for k in "${order[@]}"; do
				[ "${k%%.*}" = "$sec" ] && [ -n "${v[$k]}" ] && echo "${k#*.} = ${v[$k]}"
			done
		done
	} >"$XDG_CONFIG_HOME/outbox/config"
}

# od_once [timeout]: outboxd --once; $od_rc, its stderr in $T/od.err (also
# collected in $T/od.all) and echoed, indented, to the test's output.
od_once() {
	od_rc=0
	timeout "${1:-30}" "$OD" --once >"$T/od.out" 2>"$T/od.err" || od_rc=$?
	cat "$T/od.err" >>"$T/od.all"
	sed 's/^/    | /' "$T/od.err"
	[ "$od_rc" -ne 124 ] || fail "outboxd --once did not finish within ${1:-30} s"
}

# queue_msg SUBJECT [args]: a short message to the args (default: bob@example.com).
queue_msg() {
	local subj=$1
	shift
	[ $# -gt 0 ] || set -- bob@example.com
	printf 'Subject: %s\nTo: bob@example.com\n\nbody of %s\n' "$subj" "$subj" | "$SM" -i "$@" ||
		fail "sendmail failed queueing \"$subj\""
}

state_of() { cat "$Q/state/$1" 2>/dev/null; }
state_all() { cat "$Q"/state/* 2>/dev/null; }

# force_due: forget every "next" time, as if the retry time had come.
force_due() {
	local f
	for f in "$Q"/state/*; do
		[ -f "$f" ] && sed -i '/^next\t/d' "$f"
	done
	return 0
}

# srv_count ERE: lines of the current server's log matching (connection number stripped).
srv_count() {
	cut -d' ' -f2- "$SDIR/log" | grep -cE -- "$1"
}

# stored [ERE]: messages the server stored (whose bytes match ERE).
stored() {
	local n=0 f
	for f in "$SDIR"/mail/*.eml; do
		[ -f "$f" ] || continue
		if [ $# -eq 0 ] || grep -qE -- "$1" "$f"; then
			n=$((n + 1))
		fi
	done
	echo "$n"
}

# has_stored N [ERE]: at least N stored messages (matching); for wait_for.
has_stored() {
	local n=$1
	shift
	[ "$(stored "$@")" -ge "$n" ]
}

# rcpt_deliveries ADDR: stored messages that had ADDR among their RCPTs.
rcpt_deliveries() {
	"$SPY" - "$SDIR/mail" "$1" <<'EOF'
import glob, json, os, sys
n = 0
for f in glob.glob(os.path.join(sys.argv[1], "*.json")):
    with open(f) as j:
        n += json.load(j)["rcpt_tos"].count(sys.argv[2])
print(n)
EOF
}

# json_of N KEY: KEY of stored message number N (1-based), as JSON.
json_of() {
	"$SPY" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))[sys.argv[2]]))' \
		"$(printf '%s/mail/%06d.json' "$SDIR" "$1")" "$2"
}

# expect_eq WHAT GOT WANT
expect_eq() {
	[ "$2" = "$3" ] && return 0
	fail "$1: got [$2], expected [$3]"
}

# expect_state_has ERE [file]: the state of the one queued message matches.
expect_state_has() {
	state_all | grep -qE -- "$1" && return 0
	fail "the state does not match /$1/: $(state_all | tr '\t\n' ' |' | head -c 600)"
}

expect_state_lacks() {
	state_all | grep -qE -- "$1" || return 0
	fail "the state matches /$1/: $(state_all | grep -E -- "$1" | tr '\t\n' ' |' | head -c 600)"
}

# expect_no_account_hold / expect_account_hold
expect_account_hold() {
	[ -f "$Q/account-hold" ] || fail "no account-hold file"
}
expect_no_account_hold() {
	[ ! -e "$Q/account-hold" ] || fail "account-hold exists: $(cat "$Q/account-hold")"
}

# expect_od_rc N
expect_od_rc() {
	[ "$od_rc" -eq "$1" ] || fail "outboxd --once exited $od_rc, expected $1"
}

# set_mode chunking|data: which of outboxd's two ways of sending the next
# start_server's offer makes it take: CHUNKING with PIPELINING (what Gmail
# offers: BDAT, pipelined across messages) or, without CHUNKING, DATA.
set_mode() {
	MODE=$1
	case $MODE in
	chunking) MODE_ARGS=() ;;
	data) MODE_ARGS=(--no-chunking) ;;
	*) echo "set_mode: $1?" >&2; exit 99 ;;
	esac
}
set_mode chunking

# expect_via VIA: every message the server stored came by VIA (DATA or BDAT).
expect_via() {
	local f v
	for f in "$SDIR"/mail/*.json; do
		[ -f "$f" ] || continue
		v=$("$SPY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["via"])' "$f")
		[ "$v" = "$1" ] || { fail "$(basename "$f") came by $v, expected $1"; return 1; }
	done
	return 0
}
