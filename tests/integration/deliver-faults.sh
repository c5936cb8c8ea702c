#!/bin/bash
# Faults in the middle of a delivery, over both ways of sending (CHUNKING
# pipelined across messages, as with Gmail, and DATA): a connection lost in
# the middle of a message, one lost after the final dot or chunk (the one
# window where SMTP itself may duplicate), one lost in the middle of a
# pipeline of messages, outboxd killed with SIGKILL while it waits for the
# server, and stopped with SIGTERM. Nothing is ever lost.
. "${BASH_SOURCE%/*}/lib.sh"
. "${BASH_SOURCE%/*}/lib-deliver.sh"

script() {
	printf '%s\n' "$1" >"$T/script.json"
}

# gone PID: the process has exited (a zombie child counts as gone).
gone() {
	! kill -0 "$1" 2>/dev/null || [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" = Z ]
}

for mode in chunking data; do
	set_mode $mode

	check "[$MODE] connection dropped in the middle of the message: kept as deferred, delivered exactly once on the next run"
	if [ $MODE = chunking ]; then
		script '[{"on": "bdat", "close": true, "times": 1}]'	# the first chunk of two
	else
		script '[{"on": "data", "close": true, "times": 1}]'
	fi
	start_server "${MODE_ARGS[@]}" --script "$T/script.json"
	write_config
	queue_msg "dropped inside"
	od_once
	expect_od_rc 75
	expect_eq "messages stored" "$(stored)" 0
	expect_count 1
	expect_state_has '^rcpt	deferred	'
	# With DATA the client knows the end of data was never sent; pipelined
	# chunks may all have left before the server hung up, so it cannot know.
	[ $MODE = data ] && expect_state_lacks 'may have been delivered'
	force_due
	od_once
	expect_od_rc 0
	expect_eq "copies stored" "$(stored '^Subject: dropped inside')" 1
	expect_empty_queue
	stop_server

	check "[$MODE] connection dropped after the end of data, message not stored: deferred (possibly delivered), then exactly one copy"
	script '[{"on": "data-end", "close": true, "times": 1}]'
	start_server "${MODE_ARGS[@]}" --script "$T/script.json"
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

	check "[$MODE] connection dropped after the end of data, message stored: deferred as possibly delivered, sent again (the documented duplicate)"
	script '[{"on": "data-end", "close": true, "store": true, "times": 1}]'
	start_server "${MODE_ARGS[@]}" --script "$T/script.json"
	write_config
	queue_msg "lost reply stored"
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

	check "[$MODE] connection dropped at the end of the 3rd of 5 messages: the first two once, the rest kept, then each exactly once"
	script '[{"on": "data-end", "match": "Subject: five 3", "close": true, "times": 1}]'
	start_server "${MODE_ARGS[@]}" --script "$T/script.json"
	write_config
	for i in 1 2 3 4 5; do
		queue_msg "five $i"
	done
	od_once
	for i in 1 2; do
		expect_eq "copies of message $i" "$(stored "^Subject: five $i")" 1
	done
	expect_eq "copies of message 3" "$(stored "^Subject: five 3")" 0
	# 4 and 5 were in flight (pipelined) or go over a new connection (DATA).
	n45=$(($(stored "^Subject: five 4") + $(stored "^Subject: five 5")))
	[ $MODE = chunking ] && expect_eq "copies of messages 4 and 5 (in flight when the connection went)" $n45 0
	[ $MODE = data ] && expect_eq "copies of messages 4 and 5 (over a new connection)" $n45 2
	expect_count $((3 - n45))
	expect_state_lacks '^rcpt	(failed|sent)'
	force_due
	od_once
	expect_od_rc 0
	for i in 1 2 3 4 5; do
		expect_eq "copies of message $i after the retry" "$(stored "^Subject: five $i")" 1
	done
	expect_empty_queue
	stop_server

	check "[$MODE] outboxd killed with SIGKILL while waiting for the end-of-data reply: after a restart every message arrives, none lost"
	script '[{"on": "data-end", "match": "Subject: kill 3", "delay": 4, "times": 1}]'
	start_server "${MODE_ARGS[@]}" --script "$T/script.json"
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
	od_once
	expect_od_rc 0
	for i in 1 2 3 4 5; do
		n=$(stored "^Subject: kill $i"$'\r'"?\$")
		[ "$n" -ge 1 ] || fail "message \"kill $i\" was lost"
		# Lockstep (DATA): 1 and 2 were done before the kill. Pipelined,
		# all five may have been in flight: at least once is the promise.
		if [ $MODE = data ] && [ "$i" -le 2 ] && [ "$n" -ne 1 ]; then
			fail "message \"kill $i\", accepted before the kill, stored $n times"
		fi
	done
	echo "    copies stored: $(for i in 1 2 3 4 5; do printf '%s ' "$(stored "^Subject: kill $i"$'\r'"?\$")"; done)"
	expect_empty_queue
	expect_no_tmp
	stop_server

	check "[$MODE] SIGTERM while a message is in flight: outboxd finishes it, stops soon, nothing lost or sent twice"
	script '[{"on": "data-end", "match": "Subject: term 1", "delay": 2, "times": 1}]'
	start_server "${MODE_ARGS[@]}" --script "$T/script.json"
	write_config "delivery.timeout=10s" "delivery.idle-exit=30s"
	for i in 1 2 3 4; do
		queue_msg "term $i"
	done
	"$OD" >"$T/od-term.out" 2>"$T/od-term.err" &
	odpid=$!
	_od_pids+=("$odpid")
	if wait_for 10 grep -q 'RULE 0 data-end' "$SDIR/log"; then
		kill -TERM "$odpid"
		if wait_for 8 gone "$odpid"; then
			rc=0
			wait "$odpid" || rc=$?
			expect_eq "exit status on SIGTERM" "$rc" 0
		else
			fail "outboxd did not stop within 8 s of SIGTERM"
		fi
	else
		fail "the delivery never reached message 1"
	fi
	sed 's/^/    | /' "$T/od-term.err"
	expect_eq "copies of the message in flight" "$(stored '^Subject: term 1')" 1
	left=$(msg_count)
	sent=0
	for i in 2 3 4; do
		n=$(stored "^Subject: term $i")
		[ "$n" -le 1 ] || fail "message \"term $i\" stored $n times"
		sent=$((sent + n))
	done
	expect_eq "messages sent plus messages still queued" $((sent + left)) 3
	expect_state_lacks '^rcpt	failed'
	force_due
	od_once
	for i in 1 2 3 4; do
		expect_eq "copies of message $i after a restart" "$(stored "^Subject: term $i")" 1
	done
	expect_empty_queue
	stop_server
done

finish
