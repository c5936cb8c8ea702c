#!/bin/bash
# SPDX-License-Identifier: MIT
# A soak: many small messages from 20 concurrent sendmail loops, delivered
# by outboxd as a service (started by the doorbell through socket
# activation), while the server defers 20% of the messages at their end
# (451), drops 5% of its connections at a random early point, and closes
# the connection as Gmail does (421 4.7.0 ... closing connection) at every
# 30th MAIL, so that there are many connections for the drops to hit; and
# "sendmail -q" now and then makes the deferred mail due again instead of
# waiting out the 5-minute backoff. In the end every message has reached
# each of its recipients exactly once, apart from duplicates in the
# documented window (outboxd never took in the reply to an earlier copy),
# and the queue is empty.
#
# FAULT_SOAK_MESSAGES (default 2000) sets the number of messages,
# FAULT_SOAK_SENDERS (default 20) the number of concurrent sendmail loops.
FAULT_DELIVERY=1
FAULT_NEED_STDERR_LOG=1
. "${BASH_SOURCE%/*}/lib-fault.sh" || exit 99
need systemd-socket-activate

MESSAGES=${FAULT_SOAK_MESSAGES:-2000}
SENDERS=${FAULT_SOAK_SENDERS:-20}
DEADLINE=${FAULT_SOAK_SECONDS:-240}	# give up waiting for an empty queue after this
SOCK=$XDG_RUNTIME_DIR/outbox.sock
PER=$(( (MESSAGES + SENDERS - 1) / SENDERS ))

check "soak: $MESSAGES messages from $SENDERS sendmail loops; the server defers 20% and drops 5% of connections"
# Rule j takes the (30 j)th MAIL: it sees every MAIL but the j - 1 taken before.
"$PY" -c 'import json, sys
n = int(sys.argv[1]) * 3 // 30 + 20
print(json.dumps([{"on": "mail", "skip": 29 * j, "times": 1, "close": True,
                   "reply": "421 4.7.0 Try again later, closing connection. (MAIL)"} for j in range(1, n)]))' \
	"$MESSAGES" >"$T/script.json"
start_server --random-defer 0.2 --random-drop 0.05 --seed "${FAULT_SOAK_SEED:-20}" --script "$T/script.json"
write_config "delivery.idle-exit=600s"
log=$(od_log_file)
rm -f "$SOCK"
systemd-socket-activate -l "$SOCK" -E XDG_DATA_HOME -E XDG_CONFIG_HOME -E XDG_RUNTIME_DIR \
	"$OD" >/dev/null 2>"$log" &
od=$!
_od_pids+=("$od")
wait_for 5 test -S "$SOCK" || fail "systemd-socket-activate did not create $SOCK"

started=$SECONDS
# sender K: PER messages, one sendmail each, to bob and to rK.
sender() {
	local k=$1 i n
	for ((i = 1; i <= PER; i++)); do
		n=$(( (k - 1) * PER + i ))
		[ "$n" -le "$MESSAGES" ] || break
		if printf 'Subject: soak %d\nTo: bob@example.com\n\nmessage %d from loop %d\n' "$n" "$n" "$k" |
			"$SM" -i bob@example.com "r$k@example.org" 2>>"$T/send.err"; then
			printf 'soak %d\tbob@example.com r%d@example.org\n' "$n" "$k" >>"$T/manifest.$k"
		else
			echo "sendmail failed for soak $n" >>"$T/send.err"
		fi
	done
}
pids=()
for ((k = 1; k <= SENDERS; k++)); do
	sender "$k" &
	pids+=("$!")
done
wait "${pids[@]}"
queued_in=$((SECONDS - started))
cat "$T"/manifest.* >"$MANIFEST"
[ -s "$T/send.err" ] && fail "sendmail: $(head -n 3 "$T/send.err")"
echo "    $(wc -l <"$MANIFEST") messages queued in $queued_in s; $(msg_count) still in the queue"

# Until the queue is empty: deferred mail is made due again every second.
flushes=0
while [ "$(msg_count)" -gt 0 ] && [ $((SECONDS - started)) -lt "$DEADLINE" ]; do
	sleep 1
	"$SM" -q || fail "sendmail -q failed"
	flushes=$((flushes + 1))
	if ! kill -0 "$od" 2>/dev/null; then
		fail "outboxd is gone: $(tail -n 3 "$log")"
		break
	fi
done
elapsed=$((SECONDS - started))
echo "    queue empty after $elapsed s ($flushes flushes)"
expect_empty_queue
expect_no_tmp
kill -TERM "$od" 2>/dev/null
wait_gone "$od" 10 || fail "outboxd did not stop on SIGTERM"
stop_server
conns=$(srv_count '^CONNECT$')
drops=$(srv_count '^DROP$')
closes=$(srv_count '^S 421 4\.7\.0 Try again later, closing connection\. \(MAIL\)$')
defers=$(srv_count '^S 451 4\.3\.0 Try again later$')
stored_total=$(stored)
echo "    $conns connections: $drops dropped, $closes closed with 421; $defers messages deferred by the server (451), $stored_total stored"
grep -c 'status=sent' "$log" | sed 's/^/    acceptances logged by outboxd: /'
tally
note="all in the documented window"
[ "$TALLY_DUPS" -eq "$TALLY_WINDOW" ] || note="$((TALLY_DUPS - TALLY_WINDOW)) OUTSIDE the window"
figures "cases=$conns" "messages=$TALLY_MESSAGES" "recipients=$TALLY_RCPTS" "delivered=$TALLY_DELIVERED" \
	"lost=$TALLY_LOST" "duplicates=$TALLY_DUPS" "deferred_by_server=$defers" "connections_dropped=$drops" "closed_by_421=$closes" \
	"seconds=$elapsed" "queue_left=$(msg_count)" -- "$note"
finish
