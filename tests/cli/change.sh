#!/bin/bash
# outbox show, retry, hold, release and delete on a message in each state
# (queued, deferred, failed, held), and what outboxd then does: a retried
# failed message goes out, a held one stays, a released one goes; delete
# removes the message and its state, and refuses without --yes and without
# a terminal; retry --all.
. "${BASH_SOURCE%/*}/lib-cli.sh" || exit 99

check "show: envelope, status, each recipient with its reply, history and headers"
make_states
# The four states, kept to start each of the next checks from.
cp -a "$Q" "$T/fixture"
restore() {
	rm -rf "$Q"
	cp -a "$T/fixture" "$Q"
}
ob show "$ID_QUEUED"
expect_ob_rc 0
out_has '^Status: +queued$'
out_has '^Attempts: +0$'
out_has '^ +dave@example\.com +pending'
out_has '^Subject: fresh$'
out_lacks '^History:'
ob show "$ID_HELD"
expect_ob_rc 0
out_has '^Status: +held$'
ob show "$ID_FAILED"
expect_ob_rc 0
out_has '^Status: +failed$'
out_has '^ +bad@example\.com +failed +550 5\.1\.1'
ob show
expect_ob_rc 64
ob show "$ID_QUEUED" "$ID_HELD"
expect_ob_rc 64
# Two recipients, two outcomes: one refused for good, the other deferred.
queue_msg "defer me" erin@example.com bad@example.org
qjson
SHOW_ID=$(ids_by_rcpt erin@example.com)
od_once
ob show "$SHOW_ID"
expect_ob_rc 0
out_has "^ID: +$SHOW_ID\$"
out_has '^Status: +deferred$'
out_has "^Queued: +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} \\(.*\\) by "
out_has "^Size: +$(body "$Q/msg/$SHOW_ID" | wc -c) bytes\$"
out_has "^From: +$ACCOUNT\$"
out_has '^Attempts: +1$'
out_has '^Next try: +[0-9]{4}-[0-9]{2}-[0-9]{2} '
out_has '^To:$'
out_has '^ +erin@example\.com +deferred +451 4\.3\.0 Mail server temporarily rejected'
out_has '^ +bad@example\.org +failed +550 5\.1\.1 The account "bad" does not exist'
out_has '^History:$'
out_has '^ +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} +.*451 4\.3\.0'
out_has '^Headers:$'
out_has '^Subject: defer me$'
out_has '^To: bob@example\.com$'
# The body is not part of it.
out_lacks '^body of defer me'

NAMES=(queued deferred failed held)
IDS=("$ID_QUEUED" "$ID_DEFERRED" "$ID_FAILED" "$ID_HELD")

# apply OP EXPECT...: OP (with --yes for delete) on each of the four, in
# order queued deferred failed held; each must exit 0 and leave the message
# in the state the matching EXPECT (an ERE) names ("absent": gone).
apply() {
	local op=$1 i
	shift
	restore
	for i in 0 1 2 3; do
		if [ "$op" = delete ]; then ob delete --yes "${IDS[$i]}"; else ob "$op" "${IDS[$i]}"; fi
		[ "$rc" -eq 0 ] || fail "$op on the ${NAMES[$i]} message exited $rc ($(_show_last))"
	done
	qjson
	for i in 0 1 2 3; do
		local got
		got=$(status_of "${IDS[$i]}")
		[[ $got =~ ^($1)$ ]] || fail "$op on the ${NAMES[$i]} message left it $got, expected $1"
		shift
	done
}

check "retry on each state: queued, deferred and failed become queued (failed recipients pending again); held stays held"
apply retry queued queued queued held
expect_eq "failed message's recipient after retry" "$(py "[r['status'] for m in j['messages'] if m['id'] == '$ID_FAILED' for r in m['recipients']]")" '["pending"]'
grep -q $'^log\t[0-9]*\tretry requested by the user$' "$Q/state/$ID_FAILED" ||
	fail "the failed message's history does not record the retry: $(tr '\t\n' ' |' <"$Q/state/$ID_FAILED")"
grep -q $'^next\t' "$Q/state/$ID_DEFERRED" && fail "the retried deferred message still has a next attempt time"

check "hold on each state: every one becomes held"
apply hold held held held held
for id in "${IDS[@]}"; do
	grep -qx $'hold\tuser' "$Q/state/$id" || fail "state/$id has no 'hold<TAB>user' line"
done

check "release on each state: held and queued become queued, a failed one stays failed"
apply release queued 'queued|deferred' failed queued
for id in "${IDS[@]}"; do
	grep -q $'^hold\t' "$Q/state/$id" 2>/dev/null && fail "state/$id still holds after release"
done

check "delete --yes on each state: message and state gone"
apply delete absent absent absent absent
for id in "${IDS[@]}"; do
	[ -e "$Q/msg/$id" ] && fail "msg/$id is still there after delete --yes"
	[ -e "$Q/state/$id" ] && fail "state/$id is still there after delete --yes"
done
expect_empty_queue
out_has '^Deleted [0-9A-Z]{16}\.$'

# From here on the server accepts everything.
stop_server
start_server
write_config

check "retry a failed message: queued, then delivered by outboxd --once; the held one is not sent"
restore
ob retry "$ID_FAILED"
expect_ob_rc 0
qjson
expect_status "$ID_FAILED" queued
od_once
qjson
expect_status "$ID_FAILED" absent
expect_eq "deliveries to bad@ (the retried message)" "$(rcpt_deliveries bad@example.com)" 1
expect_eq "deliveries to dave@ (queued)" "$(rcpt_deliveries dave@example.com)" 1
expect_eq "deliveries to bob@ (deferred, not due)" "$(rcpt_deliveries bob@example.com)" 0
expect_eq "deliveries to carol@ (held)" "$(rcpt_deliveries carol@example.com)" 0
expect_status "$ID_HELD" held
expect_status "$ID_DEFERRED" deferred

step "hold keeps outboxd from sending a message even when it is due; release lets it go"
ob hold "$ID_DEFERRED"
expect_ob_rc 0
force_due
od_once
qjson
expect_status "$ID_DEFERRED" held
expect_status "$ID_HELD" held
expect_eq "deliveries to bob@ (held, due)" "$(rcpt_deliveries bob@example.com)" 0
expect_eq "deliveries to carol@ (held)" "$(rcpt_deliveries carol@example.com)" 0
ob release "$ID_HELD"
expect_ob_rc 0
out_has "^Released $ID_HELD\\.\$"
ob release "$ID_DEFERRED"
expect_ob_rc 0
od_once
expect_od_rc 0
qjson
expect_status "$ID_HELD" absent
expect_status "$ID_DEFERRED" absent
expect_eq "deliveries to carol@ after release" "$(rcpt_deliveries carol@example.com)" 1
expect_eq "deliveries to bob@ after release" "$(rcpt_deliveries bob@example.com)" 1
expect_empty_queue

check "delete without --yes and without a terminal: refused with 64, nothing deleted"
restore
for id in "${IDS[@]}"; do
	ob delete "$id" </dev/null
	expect_ob_rc 64
	[ -e "$Q/msg/$id" ] || fail "msg/$id was deleted without --yes"
done
[ -e "$Q/state/$ID_DEFERRED" ] || fail "state/$ID_DEFERRED was deleted without --yes"

step "delete on a terminal asks: 'n' keeps the message, 'y' deletes it"
if command -v script >/dev/null 2>&1; then
	printf 'n\n' | script -q -e -c "$OB delete $ID_FAILED" /dev/null >"$T/tty.out" 2>&1
	[ -e "$Q/msg/$ID_FAILED" ] || fail "the message was deleted after answering n: $(tr '\r\n' '  ' <"$T/tty.out")"
	grep -q 'Delete message' "$T/tty.out" || fail "no question asked on a terminal: $(tr '\r\n' '  ' <"$T/tty.out")"
	printf 'y\n' | script -q -e -c "$OB delete $ID_FAILED" /dev/null >"$T/tty.out" 2>&1
	[ -e "$Q/msg/$ID_FAILED" ] && fail "the message was kept after answering y: $(tr '\r\n' '  ' <"$T/tty.out")"
else
	echo "script(1) is not installed: the question on a terminal is not checked"
fi

check "retry --all: every deferred and failed message due now and delivered; the held one stays"
restore
ob retry --all
expect_ob_rc 0
out_has '^[0-9]+ messages? to retry now\.$'
qjson
expect_eq "statuses (queued, deferred, failed, held)" \
	"$(status_of "$ID_QUEUED") $(status_of "$ID_DEFERRED") $(status_of "$ID_FAILED") $(status_of "$ID_HELD")" "queued queued queued held"
before=$(stored)
od_once
expect_od_rc 0
qjson
expect_eq "messages delivered" "$(stored)" "$((before + 3))"
expect_eq "left in the queue" "$(py "[m['id'] for m in j['messages']]")" "[\"$ID_HELD\"]"

check "a message being delivered (locked) is not changed: 75"
restore
if command -v flock >/dev/null 2>&1; then
	cp "$Q/state/$ID_DEFERRED" "$T/state.before"
	flock -o "$Q/msg/$ID_DEFERRED" "$OB" hold "$ID_DEFERRED" >"$T/out" 2>"$T/err" && rc=0 || rc=$?
	expect_ob_rc 75
	cmp -s "$Q/state/$ID_DEFERRED" "$T/state.before" || fail "the state of a locked message changed"
else
	echo "flock(1) is not installed: not checked"
fi

check "usage errors: 64"
restore
for args in "retry" "retry --all $ID_QUEUED" "hold" "hold $ID_QUEUED $ID_HELD" "release --all" "delete --all" \
	"hold --yes $ID_QUEUED" "delete --bogus $ID_QUEUED"; do
	ob $args
	[ "$rc" -eq 64 ] || fail "outbox $args exited $rc, expected 64"
done
qjson
expect_eq "messages left" "$(py "len(j['messages'])")" 4

stop_server
finish
