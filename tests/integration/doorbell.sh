#!/bin/bash
# SPDX-License-Identifier: MIT
# The doorbell: after queueing, sendmail connects to
# $XDG_RUNTIME_DIR/outbox.sock (or /run/user/UID/outbox.sock when the
# variable is unset, as under cron). A listener sees the connection only once
# the message is in msg/; without a listener, with a stale socket, or with a
# listener that never answers, sendmail still exits 0 at once.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 99

# listen PATH [BACKLOG_ONLY]: a unix socket listener in the background that
# records, for each connection, how many messages msg/ held at that moment
# (one line each in $T/rings). With BACKLOG_ONLY it never accepts.
listen() {
	rm -f "$T/rings" "$T/ready"
	: >"$T/rings"
	"$PY" - "$1" "$Q/msg" "$T/rings" "$T/ready" "${2:-}" <<'EOF' &
import os, socket, sys, time
path, qmsg, rings, ready, backlog_only = sys.argv[1:6]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(0 if backlog_only else 16)
open(ready, "w").close()
if backlog_only:
    time.sleep(60)
    sys.exit(0)
s.settimeout(30)
while True:
    try:
        c, _ = s.accept()
    except socket.timeout:
        break
    n = len(os.listdir(qmsg)) if os.path.isdir(qmsg) else 0
    with open(rings, "a") as f:
        f.write("%d\n" % n)
    c.close()
EOF
	listener=$!
	on_exit "kill $listener 2>/dev/null"
	for _ in $(seq 1 100); do
		[ -e "$T/ready" ] && return 0
		sleep 0.05
	done
	fail "the listener did not start"
}

stop_listening() {
	kill "$listener" 2>/dev/null
	wait "$listener" 2>/dev/null
	rm -f "$1"
}

# rings_after N: how many connections the listener has seen, waiting a little for N.
rings_after() {
	local want=$1
	for _ in $(seq 1 40); do
		[ "$(wc -l <"$T/rings")" -ge "$want" ] && break
		sleep 0.05
	done
	wc -l <"$T/rings"
}

printf 'Subject: ring\n\nbody\n' >"$T/in"

if [ "${1:-}" = --default-path ]; then
	# Run inside "unshare -m": /run is a private tmpfs here.
	mount -t tmpfs -o mode=0755 outbox-run /run 2>"$T/err" || skip "cannot mount /run: $(cat "$T/err")"
	on_exit 'umount /run'
	mkdir -p "/run/user/$(id -u)"
	chmod 700 "/run/user/$(id -u)"
	for how in unset relative; do
		check "XDG_RUNTIME_DIR $how: the bell at /run/user/UID/outbox.sock rings"
		listen "/run/user/$(id -u)/outbox.sock"
		rc=0
		if [ $how = unset ]; then
			env -u XDG_RUNTIME_DIR "$SM" -oi bob@example.org <"$T/in" >"$T/out" 2>"$T/err" || rc=$?
		else
			XDG_RUNTIME_DIR=relative/run "$SM" -oi bob@example.org <"$T/in" >"$T/out" 2>"$T/err" || rc=$?
		fi
		expect_ok
		[ "$(rings_after 1)" -eq 1 ] || fail "no ring at /run/user/$(id -u)/outbox.sock"
		stop_listening "/run/user/$(id -u)/outbox.sock"
	done
	finish
fi

sock=$XDG_RUNTIME_DIR/outbox.sock

check "a listener is rung after the message is queued"
listen "$sock"
run -oi bob@example.org <"$T/in"
expect_ok
expect_count 1
[ "$(rings_after 1)" -eq 1 ] || fail "rung $(wc -l <"$T/rings") times, expected once"
[ "$(head -n 1 "$T/rings")" = 1 ] || fail "at the ring msg/ held $(head -n 1 "$T/rings") messages, expected 1"

check "-t, -bs and -q ring; a refused run does not"
: >"$T/rings"
run -t -i <<<$'To: bob@example.org\n\nbody'
expect_ok
[ "$(rings_after 1)" -eq 1 ] || fail "-t: rung $(wc -l <"$T/rings") times"
printf 'HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: bs\r\n\r\nx\r\n.\r\nQUIT\r\n' >"$T/bs"
run -bs <"$T/bs"
expect_ok
[ "$(rings_after 2)" -eq 2 ] || fail "-bs: rung $(wc -l <"$T/rings") times in all"
[ "$(sed -n 2p "$T/rings")" = 2 ] || fail "-bs rang before its message was in msg/"
run -q </dev/null
expect_ok
[ "$(rings_after 3)" -eq 3 ] || fail "-q did not ring"
run -i </dev/null
expect_rc 64
run -X /dev/null bob@example.org </dev/null
expect_rc 64
printf 'HELO x\r\nQUIT\r\n' >"$T/bs"
run -bs <"$T/bs"
expect_ok
sleep 0.3
[ "$(wc -l <"$T/rings")" -eq 3 ] || fail "a run that queued nothing rang"
stop_listening "$sock"

check "no socket: exit 0, nothing on stderr"
rm -f "$sock"
run -oi bob@example.org <"$T/in"
expect_ok
expect_count 1

check "a stale socket with nobody listening: exit 0"
"$PY" -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$sock"
[ -S "$sock" ] || fail "could not make a stale socket"
run -oi bob@example.org <"$T/in"
expect_ok
expect_count 1
rm -f "$sock"

check "a regular file where the socket should be: exit 0"
echo not a socket >"$sock"
run -oi bob@example.org <"$T/in"
expect_ok
expect_count 1
rm -f "$sock"

check "a listener that never accepts (full backlog): sendmail does not wait"
listen "$sock" backlog-only
start=$(date +%s%N)
for n in 1 2 3 4 5; do
	run -oi bob@example.org <"$T/in"
	expect_ok
done
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "5 runs against a full backlog took $ms ms"
[ "$ms" -lt 3000 ] || fail "5 runs took $ms ms: the doorbell blocks"
expect_count 5
stop_listening "$sock"

check "XDG_RUNTIME_DIR unset (cron): exit 0"
rc=0
env -u XDG_RUNTIME_DIR "$SM" -oi bob@example.org <"$T/in" >"$T/out" 2>"$T/err" || rc=$?
expect_ok
expect_count 1

if command -v unshare >/dev/null && unshare -m true 2>/dev/null; then
	r=0
	unshare -m --propagation private bash "${BASH_SOURCE[0]}" --default-path || r=$?
	case $r in
	0) ;;
	77) echo "note: /run/user/UID/outbox.sock could not be tested" ;;
	*) check "default doorbell path"; fail "the /run/user/UID checks failed (exit $r)" ;;
	esac
else
	echo "note: unshare -m is not permitted: /run/user/UID/outbox.sock checked for exit status only"
fi

finish
