#!/bin/bash
# Faults in the middle of a delivery: a connection lost before the end of
# data, one lost after the final dot (the one window where SMTP itself may
# duplicate), and outboxd killed with SIGKILL while it waits for the server.
# Nothing is ever lost.
. "${BASH_SOURCE%/*}/lib.sh"
. "${BASH_SOURCE%/*}/lib-deliver.sh"

script() {
	printf '%s\n' "$1" >"$T/script.json"
}

check "connection dropped at DATA: kept as deferred, delivered exactly once on the next run"
script '[{"on": "data", "close": true, "times": 1}]'
start_server --script "$T/script.json"
write_config
queue_msg "dropped at data"
od_once
expect_od_rc 75
expect_eq "messages stored" "$(stored)" 0
expect_count 1
expect_state_has '^rcpt	deferred	'
expect_state_lacks 'may have been delivered'
force_due
od_once
expect_od_rc 0
expect_eq "copies stored" "$(stored '^Subject: dropped at data')" 1
expect_empty_queue
stop_server

check "connection dropped after the final dot, message not stored: deferred (possibly delivered), then exactly one copy"
script '[{"on": "data-end", "close": true, "times": 1}]'
start_server --script "$T/script.json"
write_config
queue_msg "lost reply unstored"
od_once
expect_od_rc 75
expect_eq "messages stored" "$(stored)" 0
expect_count 1
expect_state_has '^rcpt	deferred	.*may have been delivered'
force_due
od_once
expect_od_rc 0
expect_eq "copies stored" "$(stored '^Subject: lost reply unstored')" 1
expect_empty_queue
stop_server

check "connection dropped after the final dot, message stored: deferred as possibly delivered, sent again (the documented duplicate)"
script '[{"on": "data-end", "close": true, "store": true, "times": 1}]'
start_server --script "$T/script.json"
write_config
queue_msg "lost reply stored"
single_msg
id=${M##*/}
od_once
expect_od_rc 75
expect_eq "messages stored" "$(stored)" 1
expect_count 1
expect_state_has '^rcpt	deferred	[0-9]+	bob@example\.com	lost connection .* after end of data.*may have been delivered'
grep -q 'may have been delivered' "$T/od.err" || fail "the log does not warn of a possible duplicate"
force_due
od_once
expect_od_rc 0
expect_eq "copies stored (the original and the documented duplicate)" "$(stored '^Subject: lost reply stored')" 2
expect_empty_queue
stop_server

check "outboxd killed with SIGKILL while waiting for the end-of-data reply: after a restart every message arrives, none lost"
script '[{"on": "data-end", "match": "Subject: kill 3", "delay": 4, "times": 1}]'
start_server --script "$T/script.json"
write_config "delivery.timeout=10s"
for i in 1 2 3 4 5; do
	queue_msg "kill $i"
done
"$OD" --once >"$T/od-killed.out" 2>"$T/od-killed.err" &
odpid=$!
_od_pids+=("$odpid")
if wait_for 10 grep -q 'RULE 0 data-end' "$SDIR/log"; then
	kill -9 "$odpid"
	wait "$odpid" 2>/dev/null
	echo "    killed outboxd $odpid while the server held the reply to message 3"
else
	fail "the delivery never reached message 3"
fi
sed 's/^/    | /' "$T/od-killed.err"
expect_count 3
od_once
expect_od_rc 0
for i in 1 2 3 4 5; do
	n=$(stored "^Subject: kill $i"$'\r'"?\$")
	[ "$n" -ge 1 ] || fail "message \"kill $i\" was lost"
	if [ "$i" -ne 3 ] && [ "$n" -ne 1 ]; then
		fail "message \"kill $i\" stored $n times"
	fi
done
echo "    message 3 stored $(stored "^Subject: kill 3") time(s)"
expect_empty_queue
expect_no_tmp
stop_server

finish
