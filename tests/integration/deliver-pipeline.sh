#!/bin/bash
# CHUNKING and pipelining across messages: the bytes through BDAT equal the
# bytes through DATA, at chunk boundaries too; and when one message of a
# window fails, every message and recipient ends in exactly the right state.
. "${BASH_SOURCE%/*}/lib.sh"
. "${BASH_SOURCE%/*}/lib-deliver.sh"

# expected_body FILE: the body as the wire carries it (every line end CRLF,
# a lone CR is a line end, a last line without one gets one).
expected_body() {
	"$SPY" - "$1" <<'EOF'
import sys
b = open(sys.argv[1], "rb").read().split(b"\n\n", 1)[1]
b = b.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
if b and not b.endswith(b"\r\n"):
    b += b"\r\n"
sys.stdout.buffer.write(b)
EOF
}

# stored_body N: the body of stored message N.
stored_body() {
	"$SPY" -c 'import sys; sys.stdout.buffer.write(open(sys.argv[1],"rb").read().split(b"\r\n\r\n",1)[1])' \
		"$(printf '%s/mail/%06d.eml' "$SDIR" "$1")"
}

# make_body SIZE FILE: a message whose body is SIZE bytes of awkward lines:
# leading dots, bare CRs, long lines, no final newline.
make_body() {
	"$SPY" - "$1" "$2" <<'EOF'
import random, sys
size, path = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(size)
parts, n = [], 0
while n < size:
    line = rnd.choice([b".", b"..", b".leading dot", b"plain text line", b"x" * 1000,
                       b"bare\rcr", b"", b"\xc3\xa9t\xc3\xa9"]) + rnd.choice([b"\n", b"\r\n"])
    parts.append(line)
    n += len(line)
body = b"".join(parts)[:size]
open(path, "wb").write(b"Subject: chunk %d\nTo: bob@example.com\n\n" % size + body)
EOF
}

sizes="1 2 262141 262142 262143 262144 262145 262146 524288 524289 600000"

for mode in chunking data; do
	if [ $mode = chunking ]; then start_server; else start_server --no-chunking; fi
	write_config
	check "$mode: bodies around the 256 KiB read size arrive byte-exact"
	for s in $sizes; do
		make_body "$s" "$T/body.$s"
		"$SM" -i "size$s@example.org" <"$T/body.$s" || fail "sendmail failed for size $s"
	done
	od_once
	expect_od_rc 0
	n=0
	for s in $sizes; do
		n=$((n + 1))
		cmp -s <(expected_body "$T/body.$s") <(stored_body $n) ||
			fail "$mode: the body of $s bytes differs: $(cmp <(expected_body "$T/body.$s") <(stored_body $n) 2>&1 | head -1)"
	done
	if [ $mode = chunking ]; then
		[ "$(srv_count '^C DATA$')" -eq 0 ] || fail "DATA used although CHUNKING is offered"
		[ "$(srv_count '^C BDAT [0-9]+ LAST$')" -eq "$n" ] || fail "not one BDAT LAST per message"
	else
		[ "$(srv_count '^C BDAT')" -eq 0 ] || fail "BDAT used although CHUNKING is not offered"
	fi
	[ "$(srv_count '^CONNECT')" -eq 1 ] || fail "more than one connection"
	expect_empty_queue
	stop_server
done

# five messages from five senders, so that a rule can pick one of them
queue_five() {
	local i
	for i in 1 2 3 4 5; do
		printf 'Subject: m%d\nTo: r%d@example.org\n\nbody %d\n' $i $i $i |
			"$SM" -i -f "s$i@example.org" "r$i@example.org" "all@example.org" || fail "sendmail m$i"
	done
}

# delivered ADDR N: ADDR was a recipient of exactly N stored messages
delivered() {
	local got
	got=$(rcpt_deliveries "$1")
	[ "$got" = "$2" ] || fail "$1 received $got copies, expected $2"
}

check "a 550 to one RCPT of message 2 of 5 in flight fails that recipient only"
printf '[{"on": "rcpt", "match": "r2@example.org", "reply": "550 5.1.1 No such user"}]' >"$T/rules"
start_server --script "$T/rules"
write_config
queue_five
od_once
[ "$(srv_count '^CONNECT')" -eq 1 ] || fail "more than one connection"
for i in 1 3 4 5; do delivered "r$i@example.org" 1; done
delivered r2@example.org 0
delivered all@example.org 5
# the bounce report to the account goes out in the same run
delivered "$ACCOUNT" 1
expect_count 1
expect_state_has $'^rcpt\tfailed\t[0-9]+\tr2@example.org\t550 5.1.1 No such user'
expect_state_has $'^rcpt\tsent\t[0-9]+\tall@example.org\t'
stop_server

check "a 554 to the BDAT LAST of message 2 fails message 2, RSET follows, the rest go through"
printf '[{"on": "data-end", "match": "Subject: m2", "reply": "554 5.7.1 Message rejected", "times": 1}]' >"$T/rules"
start_server --script "$T/rules"
write_config
queue_five
od_once
for i in 1 3 4 5; do delivered "r$i@example.org" 1; done
delivered r2@example.org 0
delivered all@example.org 4
delivered "$ACCOUNT" 1
[ "$(srv_count '^C RSET$')" -ge 1 ] || fail "no RSET after the failed transaction"
expect_count 1
expect_state_has $'^rcpt\tfailed\t[0-9]+\tr2@example.org\t554 5.7.1 Message rejected'
expect_state_lacks $'^rcpt\tsent\t'
stop_server

check "a 421 at message 3 in the middle of the window, after 2 delivered: 3, 4 and 5 go again at once on a new connection, each once"
printf '[{"on": "data-end", "match": "Subject: m3", "reply": "421 4.7.0 Try again later, closing connection.", "close": true, "times": 1}]' >"$T/rules"
start_server --script "$T/rules"
write_config
queue_five
od_once
expect_od_rc 0
for i in 1 2 3 4 5; do delivered "r$i@example.org" 1; done
delivered all@example.org 5
expect_empty_queue
expect_eq "connections" "$(srv_count '^CONNECT$')" 2
grep -q 'may have been delivered' "$T/od.err" && fail "a message the server never read was logged as maybe delivered"
stop_server

check "a 421 to the first MAIL of a session, before any delivery: all 5 wait on the backoff, none 'maybe delivered'"
printf '[{"on": "mail", "reply": "421 4.7.0 Try again later, closing connection.", "close": true, "times": 1}]' >"$T/rules"
start_server --script "$T/rules"
write_config
queue_five
od_once
expect_od_rc 75
expect_count 5
expect_eq "connections" "$(srv_count '^CONNECT$')" 1
expect_eq "recipients deferred by the 421 or as not taken after it" \
	"$(state_all | grep -cP '^rcpt\tdeferred\t[0-9]+\tr[0-9]@example\.org\t(421 4\.7\.0|not taken: the server closed the session before it: 421 4\.7\.0)')" 5
state_all | grep -q 'may have been delivered' && fail "a message the server never read is recorded as maybe delivered"
expect_state_lacks $'^rcpt\t(failed|sent)\t'
force_due
od_once
for i in 1 2 3 4 5; do delivered "r$i@example.org" 1; done
expect_empty_queue
stop_server

check "a connection dropped with 3 messages in flight defers exactly those; nothing is lost"
printf '[{"on": "data-end", "match": "Subject: m3", "close": true, "times": 1}]' >"$T/rules"
start_server --script "$T/rules"
write_config
queue_five
od_once
delivered r1@example.org 1
delivered r2@example.org 1
expect_count 3
expect_state_has $'^rcpt\tdeferred\t[0-9]+\tr3@example.org\tlost connection .* after end of data'
expect_state_lacks $'^rcpt\t(failed|sent)\t'
force_due
od_once
for i in 1 2 3 4 5; do delivered "r$i@example.org" 1; done
expect_empty_queue
stop_server

check "a 503 to message 3's MAIL is no verdict: message 3 goes again after RSET, in the same run"
printf '[{"on": "mail", "match": "s3@example.org", "reply": "503 5.5.1 Bad sequence of commands", "times": 1}]' >"$T/rules"
start_server --script "$T/rules"
write_config
queue_five
od_once
expect_od_rc 0
for i in 1 2 3 4 5; do delivered "r$i@example.org" 1; done
delivered all@example.org 5
expect_empty_queue
[ "$(srv_count '^C RSET$')" -ge 1 ] || fail "no RSET after the 503"
[ "$(srv_count '^CONNECT')" -eq 1 ] || fail "more than one connection"
stop_server

check "200 messages pipelined over one connection and one AUTH"
start_server
write_config
for i in $(seq 1 200); do
	printf 'Subject: bulk %d\n\nbody %d\n' "$i" "$i" | "$SM" -i "bulk$i@example.org" || fail "sendmail bulk $i"
done
od_once
expect_od_rc 0
expect_eq "messages stored" "$(stored)" 200
expect_eq "connections" "$(srv_count '^CONNECT')" 1
expect_eq "AUTH commands" "$(srv_count '^C AUTH')" 1
expect_empty_queue
stop_server

finish
