#!/bin/bash
# SPDX-License-Identifier: MIT
# outboxd killed with SIGKILL at random moments of a delivery, many times,
# over both ways of sending (CHUNKING pipelined across messages, as Gmail
# offers, and DATA): outboxd --once is started again after each kill, and at
# the end without kills until the queue is empty. Every recipient gets the
# message at least once. The server holds its reply to each end of data for
# a while (a rule: delay at data-end, after the message is stored), so the
# window between the final dot or BDAT LAST and the reply is wide and many
# kills land in it. A recipient who got a message twice is counted, and
# each such duplicate must be explained: outboxd never took in the reply to
# the earlier copy (its log has no acceptance for it, and that connection
# did not end with QUIT), or it took it in and was killed before it could
# remove the message.
#
# FAULT_OD_KILLS (default 20) kills per way of sending; FAULT_OD_MESSAGES
# (default 40) messages per way, each to two recipients.
FAULT_DELIVERY=1
FAULT_NEED_STDERR_LOG=1
. "${BASH_SOURCE%/*}/lib-fault.sh" || exit 99

KILLS=${FAULT_OD_KILLS:-20}
MESSAGES=${FAULT_OD_MESSAGES:-40}
DELAY=0.2			# the server's pause before each end-of-data reply

printf '[{"on": "data-end", "delay": %s}]\n' "$DELAY" >"$T/script.json"

total_kills=0 total_msgs=0 total_rcpts=0 total_delivered=0 total_lost=0
total_dups=0 total_window=0 total_after_kill=0 total_killed=0 total_runs=0
for mode in chunking data; do
	set_mode $mode
	check "[$MODE] outboxd --once killed at random moments, $KILLS times, over $MESSAGES messages to two recipients each"
	: >"$MANIFEST"
	rm -f "$ODLOGS"/*
	start_server "${MODE_ARGS[@]}" --script "$T/script.json"
	write_config
	for i in $(seq 1 "$MESSAGES"); do
		fault_msg "$MODE kill $i" bob@example.com carol@example.net
	done
	kills=0 runs=0 started=$SECONDS
	while [ "$kills" -lt "$KILLS" ] && [ "$(msg_count)" -gt 0 ]; do
		runs=$((runs + 1))
		log=$(od_log_file)
		# (In a subshell that waits for it: the shell's "Killed" notice goes nowhere.)
		( "$OD" --once >/dev/null 2>"$log" & echo $! >"$T/od.pid"; wait ) 2>/dev/null &
		sub=$!
		wait_for 5 test -s "$T/od.pid" || fail "outboxd did not start"
		pid=$(cat "$T/od.pid")
		rm -f "$T/od.pid"
		_od_pids+=("$pid")
		# Anywhere from the TLS handshake to a few messages in.
		sleep "$(printf '0.%03d' $((RANDOM % 600)))"
		mark "KILL $runs"
		if kill -9 "$pid" 2>/dev/null; then
			kills=$((kills + 1))
			touch "${log%.log}.killed"
		fi
		wait "$sub"
		mark "DEAD $runs"
	done
	echo "    $kills kills in $runs runs, $((SECONDS - started)) s; $(msg_count) message(s) left"
	# Then without kills until the queue is empty.
	drain_queue 6
	runs=$((runs + DRAIN_RUNS))
	expect_empty_queue
	expect_no_tmp
	# (A killed outboxd may leave a temporary .ID.tmp; the sweep takes those after an hour.)
	[ -z "$(ls "$Q/state" 2>/dev/null)" ] || fail "state files left: $(ls "$Q/state")"
	tally
	echo "    $TALLY_DUPS duplicate(s): $TALLY_WINDOW with the earlier copy's reply never taken in by outboxd" \
		"($TALLY_REPLY_AFTER_KILL of them written by the server only after the kill), $TALLY_KILLED taken in but killed before the message was removed"
	figures "mode=$MODE" "cases=$kills" "runs=$runs" "messages=$TALLY_MESSAGES" "recipients=$TALLY_RCPTS" \
		"delivered=$TALLY_DELIVERED" "lost=$TALLY_LOST" "duplicates=$TALLY_DUPS" \
		"in_window=$TALLY_WINDOW" "reply_after_kill=$TALLY_REPLY_AFTER_KILL" \
		"killed_before_removal=$TALLY_KILLED" "unexplained=$TALLY_UNEXPLAINED"
	total_kills=$((total_kills + kills)) total_runs=$((total_runs + runs))
	total_msgs=$((total_msgs + TALLY_MESSAGES)) total_rcpts=$((total_rcpts + TALLY_RCPTS))
	total_delivered=$((total_delivered + TALLY_DELIVERED)) total_lost=$((total_lost + TALLY_LOST))
	total_dups=$((total_dups + TALLY_DUPS)) total_window=$((total_window + TALLY_WINDOW))
	total_after_kill=$((total_after_kill + TALLY_REPLY_AFTER_KILL)) total_killed=$((total_killed + TALLY_KILLED))
	[ "$kills" -ge $((KILLS / 2)) ] || fail "only $kills kills landed before the queue was empty: the test did not test"
	stop_server
done

explained=$((total_window + total_killed))
note="all in the documented window"
[ "$explained" -eq "$total_dups" ] || note="$((total_dups - explained)) OUTSIDE the window"
figures "cases=$total_kills" "runs=$total_runs" "messages=$total_msgs" "recipients=$total_rcpts" \
	"delivered=$total_delivered" "lost=$total_lost" "duplicates=$total_dups" \
	"reply_never_taken_in=$total_window" "reply_after_kill=$total_after_kill" \
	"killed_before_removal=$total_killed" -- "$note"
finish
