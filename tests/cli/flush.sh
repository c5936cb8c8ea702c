#!/bin/bash
# outbox flush: a deferred message whose next try is in the future becomes
# due (its state's next time cleared) and outboxd delivers it, by
# "outboxd --once" and by a running outboxd that the flush wakes; a held
# message stays held.
. "${BASH_SOURCE%/*}/lib-cli.sh" || exit 99

# next_of ID: the next attempt time in the message's state ("" for none).
next_of() {
	sed -n 's/^next\t//p' "$Q/state/$1" 2>/dev/null
}

check "flush with no queue at all: 0"
ob flush
expect_ob_rc 0
ob flush now
expect_ob_rc 64

check "flush: a deferred message becomes due and outboxd --once delivers it; a held one stays"
fault_script '[{"on": "data-end", "match": "Subject: flush", "reply": "451 4.3.0 Try again later", "times": 2}]'
start_server --script "$T/script.json"
write_config
queue_msg "flush me" bob@example.com
queue_msg "flush me too, held" carol@example.com
qjson
D=$(ids_by_rcpt bob@example.com)
H=$(ids_by_rcpt carol@example.com)
od_once
ob hold "$H"
now=$(date +%s)
n=$(next_of "$D")
[ -n "$n" ] && [ "$n" -gt "$now" ] || fail "the deferred message's next time [$n] is not in the future (now $now)"
nh=$(next_of "$H")
qjson
expect_status "$D" deferred
expect_status "$H" held
# Not due: outboxd leaves it alone.
od_once
expect_eq "messages stored before the flush" "$(stored)" 0
ob flush
expect_ob_rc 0
expect_eq "next time of the flushed message" "$(next_of "$D")" ""
expect_eq "next time of the held message" "$(next_of "$H")" "$nh"
grep -qx $'hold\tuser' "$Q/state/$H" || fail "flush released the held message"
qjson
expect_status "$D" queued
expect_status "$H" held
od_once
expect_eq "messages stored after the flush" "$(stored)" 1
expect_eq "deliveries to bob@" "$(rcpt_deliveries bob@example.com)" 1
expect_eq "deliveries to carol@ (held)" "$(rcpt_deliveries carol@example.com)" 0
qjson
expect_status "$D" absent
expect_status "$H" held
stop_server

check "flush wakes a running outboxd, which delivers the deferred message at once"
fault_script '[{"on": "data-end", "match": "Subject: wake", "reply": "451 4.3.0 Try again later", "times": 1}]'
start_server --script "$T/script.json"
write_config
queue_msg "wake up" bob@example.com
od_once
qjson
D=$(ids_by_rcpt bob@example.com)
expect_status "$D" deferred
"$OD" >"$T/daemon.out" 2>"$T/daemon.err" &
daemon_pid=$!
on_exit '[ -z "${daemon_pid:-}" ] || kill -9 "$daemon_pid" 2>/dev/null'
wait_for 10 test -S "$XDG_RUNTIME_DIR/outbox.sock" || fail "outboxd did not bind $XDG_RUNTIME_DIR/outbox.sock"
sleep 0.3
expect_eq "messages stored by the sleeping outboxd" "$(stored)" 0
ob flush
expect_ob_rc 0
out_lacks 'does not answer'
wait_for 10 test -f "$SDIR/mail/000001.eml" || fail "outboxd did not deliver the flushed message within 10 s"
expect_eq "deliveries to bob@" "$(rcpt_deliveries bob@example.com)" 1
wait_for 5 test ! -e "$Q/msg/$D" || fail "the delivered message is still in the queue"
kill "$daemon_pid" 2>/dev/null
wait "$daemon_pid" 2>/dev/null
daemon_pid=
sed 's/^/    | /' "$T/daemon.err"
stop_server

finish
