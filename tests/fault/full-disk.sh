#!/bin/bash
# SPDX-License-Identifier: MIT
# A full disk under the queue (a small tmpfs in a private mount namespace):
# while messages are queued until sendmail can queue no more, and then,
# with the disk full to the last block, while outboxd delivers and has to
# write delivery states it cannot write. The server defers some messages at
# random (so their states must be written) and takes one recipient per
# transaction (so a message can be half sent: one recipient accepted, the
# other deferred). Every error is clean (one line from sendmail, exit 74;
# outboxd goes on and exits), nothing is lost or corrupted (every message
# and state file parses, nothing half-written stays), and once space is
# freed the queue delivers every message exactly once per recipient.
FAULT_NEED_NS=1
FAULT_DELIVERY=1
FAULT_NEED_STDERR_LOG=1
. "${BASH_SOURCE%/*}/lib-fault.sh" || exit 99

mkdir -p "$XDG_DATA_HOME"
mount -t tmpfs -o size=1536k,mode=0755 outbox-fault "$XDG_DATA_HOME" 2>"$T/mount.err" ||
	skip "cannot mount a tmpfs in a private mount namespace: $(cat "$T/mount.err")"
on_exit 'umount -l "$XDG_DATA_HOME"'
# Space to free at the end (fill.* go then).
head -c 524288 /dev/zero >"$XDG_DATA_HOME/fill.reserve"

# body_of N: the bytes of message N (about 12 KiB, two recipients).
body_of() {
	printf 'Subject: disk %d\nTo: bob@example.com, carol@example.net\n\n' "$1"
	"$PY" -c 'import sys; n = int(sys.argv[1]); sys.stdout.write("".join("message %d line %d: %s\n" % (n, i, "z" * (i % 60)) for i in range(300)))' "$1"
}

# queue_files_sane: every message file and state file parses (mailq reads
# them all and complains about any it cannot), each message holds exactly
# what sendmail was given, and nothing half-written is left.
queue_files_sane() {
	local id f n
	"$SM" -bp >"$T/mailq" 2>"$T/mailq.err" || fail "mailq failed: $(cat "$T/mailq.err")"
	[ -s "$T/mailq.err" ] && fail "mailq: $(head -c 400 "$T/mailq.err")"
	[ "$(grep -Eo '^[0-9A-Z]{16}' "$T/mailq" | sort)" = "$(msg_ids)" ] || fail "mailq does not list exactly msg/"
	for id in $(msg_ids); do
		f=$Q/msg/$id
		expect_envelope_sane "$f" || continue
		n=$(body "$f" | head -n 1 | sed -n 's/^Subject: disk \([0-9]*\)$/\1/p')
		cmp -s <(body "$f") <(body_of "$n") || fail "$id (disk $n) is not what sendmail was given"
	done
	for f in "$Q"/state/*; do
		[ -e "$f" ] || continue
		case ${f##*/} in
		.*) fail "a temporary state file is left: ${f##*/}"; continue ;;
		esac
		[ "$(head -n 1 "$f")" = "outbox-state	1" ] && [ "$(tail -c 1 "$f" | od -An -c | tr -d ' ')" = '\n' ] ||
			fail "state ${f##*/} is damaged: $(head -c 200 "$f" | od -c | head -3)"
	done
	expect_no_tmp
}

# fill: takes every free block of the file system (files named fill.*).
fill() {
	local i=0
	dd if=/dev/zero of="$XDG_DATA_HOME/fill.big" bs=64k 2>/dev/null
	while : >"$XDG_DATA_HOME/fill.$i" && printf x >>"$XDG_DATA_HOME/fill.$i" 2>/dev/null; do
		i=$((i + 1))
		[ "$i" -lt 200 ] || break
	done
	sync
}

start_server --random-defer 0.3 --max-rcpt 1 --seed 11
write_config

check "queueing onto a disk that fills up"
queued=0 refused=0 n=0
while [ "$refused" -lt 3 ] && [ "$n" -lt 200 ]; do
	n=$((n + 1))
	rc=0
	body_of $n | "$SM" -i bob@example.com carol@example.net 2>"$T/err" || rc=$?
	if [ "$rc" -eq 0 ]; then
		queued=$((queued + 1))
		manifest "disk $n" bob@example.com carol@example.net
	else
		refused=$((refused + 1))
		[ "$rc" -eq 74 ] || fail "sendmail exited $rc on a full disk, expected 74 (EX_IOERR)"
		[ "$(wc -l <"$T/err")" -eq 1 ] || fail "sendmail's error is not one line: $(cat "$T/err")"
		echo "    sendmail: $(cat "$T/err")"
	fi
done
echo "    $queued queued, then $refused refused"
[ "$queued" -ge 20 ] || fail "only $queued messages fit: the test did not test"
queue_files_sane

section "delivering from a full disk: delivery states cannot be written"
fill
df -k "$XDG_DATA_HOME" | tail -n 1 | awk '{ print "    free: " $4 " KiB" }'
: >"$XDG_DATA_HOME/probe" 2>/dev/null && printf x >>"$XDG_DATA_HOME/probe" 2>/dev/null &&
	fail "the file system still takes a write after fill"
rm -f "$XDG_DATA_HOME/probe"
# run_full N LABEL: N runs of outboxd --once; each must end cleanly.
run_full() {
	local r log
	for ((r = 1; r <= $1; r++)); do
		od_run "on a full disk"
		echo "    $2 run $r: exit $od_rc, $(grep -c 'status=sent' "$log") acceptance(s)," \
			"$(grep -c 'cannot save' "$log") state(s) not saved, $(grep -c 'no room' "$log") 'no room'," \
			"$(msg_count) message(s) left"
		force_due 2>/dev/null
		full_runs=$((full_runs + 1))
	done
}
full_runs=0
run_full 3 full
grep -h 'cannot save\|cannot remove\|no room\|No space' "$ODLOGS"/*.log | sed 's/^[^:]*: [0-9A-Z]*: /    | /' | sort | uniq -c | head -5
# Either outboxd declines to send what it could not record, or it tries and says the state was not saved.
not_recorded=$(cat "$ODLOGS"/*.log | grep -c 'cannot save the delivery state\|no room in the queue')
[ "$not_recorded" -gt 0 ] || fail "outboxd did not notice the full disk"
queue_files_sane

section "nearly full: room for a few delivery states at a time"
rm -f "$XDG_DATA_HOME"/fill.[0-9]*
truncate -s -98304 "$XDG_DATA_HOME/fill.reserve"
df -k "$XDG_DATA_HOME" | tail -n 1 | awk '{ print "    free: " $4 " KiB" }'
run_full 4 "nearly full"
queue_files_sane
state_errors=$(cat "$ODLOGS"/*.log | grep -c 'cannot save the delivery state')
no_room=$(cat "$ODLOGS"/*.log | grep -c 'no room in the queue')

section "space freed: everything is delivered, exactly once per recipient"
rm -f "$XDG_DATA_HOME"/fill.*
drain_queue 15
expect_empty_queue
expect_no_tmp
tally
echo "    $TALLY_DELIVERED of $TALLY_RCPTS recipients served; $TALLY_DUPS duplicate(s), $TALLY_WINDOW in the window"
note="exactly once per recipient"
[ "$TALLY_DUPS" -eq 0 ] || note="$TALLY_DUPS duplicate(s)"
[ "$TALLY_DUPS" -eq 0 ] || fail "$TALLY_DUPS duplicate(s) where the server never lost a reply"
figures "cases=$((refused + full_runs))" "messages=$TALLY_MESSAGES" "refused_at_enqueue=$refused" \
	"state_writes_failed=$state_errors" "not_sent_for_lack_of_room=$no_room" \
	"recipients=$TALLY_RCPTS" "delivered=$TALLY_DELIVERED" \
	"lost=$TALLY_LOST" "duplicates=$TALLY_DUPS" -- "$note"
finish
