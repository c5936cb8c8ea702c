#!/bin/bash
# outboxd as a service: started by socket activation when sendmail rings the
# doorbell, delivering within seconds and leaving once idle; started by
# hand, binding the doorbell itself and telling a service manager READY,
# STATUS and STOPPING; a broken configuration (exit 78, the mail waits);
# SIGHUP re-reads the configuration; SIGTERM stops it.
. "${BASH_SOURCE%/*}/lib.sh"
. "${BASH_SOURCE%/*}/lib-deliver.sh"
need systemd-socket-activate

SOCK=$XDG_RUNTIME_DIR/outbox.sock

# gone PID: the process has exited (a zombie child counts as gone).
gone() {
	! kill -0 "$1" 2>/dev/null || [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" = Z ]
}
# exit_status PID: reaps a child that is gone and prints its exit status.
exit_status() {
	local rc=0
	wait "$1" 2>/dev/null || rc=$?
	echo "$rc"
}
# a socket someone listens on
listening() {
	"$SPY" -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' "$SOCK" 2>/dev/null
}

start_server
write_config "delivery.idle-exit=2s"

check "socket activation: sendmail rings, outboxd delivers within seconds, then leaves when idle"
rm -f "$SOCK"
systemd-socket-activate -l "$SOCK" -E XDG_DATA_HOME -E XDG_CONFIG_HOME -E XDG_RUNTIME_DIR \
	"$OD" >"$T/sa.out" 2>"$T/sa.err" &
sa=$!
_od_pids+=("$sa")
wait_for 5 test -S "$SOCK" || fail "systemd-socket-activate did not create $SOCK"
sleep 0.2
gone "$sa" && fail "systemd-socket-activate exited early: $(cat "$T/sa.err")"
queue_msg "socket activated"
if wait_for 5 has_stored 1; then
	echo "    delivered after the doorbell"
else
	fail "nothing delivered within 5 s of the doorbell"
fi
expect_eq "messages stored" "$(stored)" 1
wait_for 3 sh -c '[ -z "$(ls -A "$1")" ]' sh "$Q/msg" || fail "the message is still queued"
if wait_for 8 gone "$sa"; then
	expect_eq "outboxd's exit status after idling" "$(exit_status "$sa")" 0
else
	fail "outboxd did not exit within 8 s with idle-exit = 2s"
fi
sed 's/^/    | /' "$T/sa.err"
# Nobody listens now: sendmail still succeeds and the mail waits.
run -i bob@example.com <<<"Subject: after exit"
expect_ok
expect_count 1

check "a burst of doorbells (a patch series) shares one connection and one login; QUIT when idle"
rm -f "$SOCK"
stop_server
start_server
write_config "delivery.idle-exit=4s"
systemd-socket-activate -l "$SOCK" -E XDG_DATA_HOME -E XDG_CONFIG_HOME -E XDG_RUNTIME_DIR \
	"$OD" >"$T/sa.out" 2>"$T/sa.err" &
sa=$!
_od_pids+=("$sa")
wait_for 5 test -S "$SOCK" || fail "systemd-socket-activate did not create $SOCK"
sleep 0.2
for i in 1 2 3 4 5 6; do
	queue_msg "patch $i/6"
	wait_for 5 has_stored "$i" || fail "patch $i not delivered within 5 s of its doorbell"
	sleep 0.3
done
expect_eq "messages stored" "$(stored)" 6
expect_eq "connections for the burst" "$(srv_count '^CONNECT')" 1
expect_eq "AUTH commands for the burst" "$(srv_count '^C AUTH')" 1
if wait_for 10 gone "$sa"; then
	expect_eq "outboxd's exit status after idling" "$(exit_status "$sa")" 0
	[ "$(srv_count '^C QUIT')" -eq 1 ] || fail "the kept session did not end with QUIT"
else
	fail "outboxd did not exit within 10 s with idle-exit = 4s"
fi
sed 's/^/    | /' "$T/sa.err"
rm -f "$SOCK"

check "started by hand: binds the doorbell itself, delivers, a second one leaves it alone, exits when idle; tells a service manager READY, STATUS, STOPPING"
# A stand-in for the service manager's notification socket.
"$SPY" - "$T/notify.sock" "$T/notify.log" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "ab", buffering=0) as log:
    while True:
        log.write(s.recv(4096) + b"\n")
PY
_od_pids+=("$!")
wait_for 5 test -S "$T/notify.sock" || fail "no notification socket"
queue_msg "before the daemon"
NOTIFY_SOCKET=$T/notify.sock "$OD" >"$T/hand.out" 2>"$T/hand.err" &
od=$!
_od_pids+=("$od")
wait_for 5 listening || fail "outboxd does not listen on $SOCK"
wait_for 5 has_stored 1 '^Subject: before the daemon' || fail "the waiting message was not delivered"
timeout 10 "$OD" >"$T/second.out" 2>"$T/second.err"
expect_eq "a second outboxd's exit status" "$?" 0
grep -q 'another outboxd' "$T/second.err" || fail "the second outboxd did not say why it left: $(cat "$T/second.err")"
queue_msg "doorbell by hand"
# An outboxd whose idle time runs out exits without another look: only the doorbell delivers this one.
wait_for 5 has_stored 1 '^Subject: doorbell by hand' || fail "the doorbell did not wake outboxd"
if wait_for 8 gone "$od"; then
	expect_eq "outboxd's exit status after idling" "$(exit_status "$od")" 0
else
	fail "outboxd did not exit within 8 s with idle-exit = 2s"
fi
[ ! -e "$SOCK" ] || fail "outboxd left its socket $SOCK behind"
expect_empty_queue
sed 's/^/    | /' "$T/hand.err"
sed 's/^/    notify | /' "$T/notify.log"
for want in 'READY=1' 'STATUS=sending 1/1 to localhost' 'STATUS=idle' 'STOPPING=1'; do
	grep -q "^$want" "$T/notify.log" || fail "no $want notification"
done

check "a broken or missing configuration: exit 78 with one line naming file, line and key; the mail waits"
queue_msg "config error"
printf '[account]\naddress = alice@gmail.com\ntls = sometimes\n' >"$XDG_CONFIG_HOME/outbox/config"
rc=0
timeout 10 "$OD" --once >/dev/null 2>"$T/cfg.err" || rc=$?
expect_eq "exit status with a bad tls value" "$rc" 78
expect_eq "error lines" "$(wc -l <"$T/cfg.err")" 1
grep -q 'config:3: \[account\] tls' "$T/cfg.err" || fail "the error does not name the line and key: $(cat "$T/cfg.err")"
rm "$XDG_CONFIG_HOME/outbox/config"
rc=0
timeout 10 "$OD" >/dev/null 2>"$T/cfg.err" || rc=$?
expect_eq "exit status without a configuration" "$rc" 78
grep -q 'outbox setup' "$T/cfg.err" || fail "no hint to run outbox setup: $(cat "$T/cfg.err")"
expect_count 1
[ -z "$(ls -A "$Q/state")" ] || fail "a configuration error touched the message's state"
write_config "delivery.idle-exit=2s"

check "SIGHUP re-reads the configuration; a broken one is refused and the old one kept; SIGTERM stops"
port_a=$PORT sdir_a=$SDIR
start_server
port_b=$PORT sdir_b=$SDIR
PORT=$port_a SDIR=$sdir_a
write_config "delivery.idle-exit=30s"
queue_msg "to server a"
"$OD" >"$T/hup.out" 2>"$T/hup.err" &
od=$!
_od_pids+=("$od")
wait_for 5 has_stored 1 '^Subject: to server a' || fail "the first message did not reach server A"
PORT=$port_b
write_config "delivery.idle-exit=30s"
kill -HUP "$od"
wait_for 5 grep -q 'configuration reloaded' "$T/hup.err" || fail "no \"configuration reloaded\" after SIGHUP"
queue_msg "to server b"
SDIR=$sdir_b
wait_for 5 has_stored 1 '^Subject: to server b' || fail "after the reload the message did not go to the new port"
SDIR=$sdir_a
expect_eq "copies of \"to server b\" on server A" "$(stored '^Subject: to server b')" 0
# A broken configuration on reload: one error, the daemon goes on with what it had.
printf '[account]\naddress = alice@gmail.com\nport = not-a-port\n' >"$XDG_CONFIG_HOME/outbox/config"
kill -HUP "$od"
wait_for 5 grep -q 'not a port number' "$T/hup.err" || fail "no error for the broken configuration"
sleep 0.2
gone "$od" && fail "outboxd exited on a broken configuration at reload"
queue_msg "after a bad reload"
SDIR=$sdir_b
wait_for 5 has_stored 1 '^Subject: after a bad reload' || fail "no delivery with the old configuration after a bad reload"
kill -TERM "$od"
if wait_for 5 gone "$od"; then
	expect_eq "exit status on SIGTERM" "$(exit_status "$od")" 0
else
	fail "outboxd did not stop within 5 s of SIGTERM"
fi
[ ! -e "$SOCK" ] || fail "outboxd left its socket $SOCK behind"
sed 's/^/    | /' "$T/hup.err"

finish
