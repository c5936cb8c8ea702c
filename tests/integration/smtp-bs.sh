#!/bin/bash
# SPDX-License-Identifier: MIT
# "sendmail -bs -odb -oem": Alpine speaks SMTP to outbox-sendmail over a
# pipe. The dialog is driven here as Alpine drives it: greeting, EHLO, MAIL,
# RCPT, DATA with dot-stuffed lines, QUIT; then two transactions in one
# session, pipelined; then the errors a client may meet.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 99

# start_bs: runs sendmail -bs with its stdin and stdout on two pipes of ours.
start_bs() {
	rm -f "$T/bs.in" "$T/bs.out"
	mkfifo "$T/bs.in" "$T/bs.out"
	"$SM" -bs -odb -oem <"$T/bs.in" >"$T/bs.out" 2>"$T/bs.err" &
	bs_pid=$!
	exec {bs_in}>"$T/bs.in" {bs_out}<"$T/bs.out"
}

# send LINE...: writes each line with CRLF, all in one write (a pipelined flight).
send() {
	local buf=
	for l; do buf+="$l"$'\r\n'; done
	printf '%s' "$buf" >&"$bs_in"
}

# reply: reads one (multi-line) reply into $reply (lines, CR removed) and $code.
reply() {
	local line
	reply='' code=''
	while IFS= read -r -t 10 line <&"$bs_out"; do
		line=${line%$'\r'}
		reply+=$line$'\n'
		if [[ $line =~ ^[0-9]{3}\  ]] || [[ $line =~ ^[0-9]{3}$ ]]; then
			code=${line:0:3}
			return 0
		fi
		[[ $line =~ ^[0-9]{3}- ]] || break
	done
	code="(no reply: [${reply%$'\n'}])"
	return 1
}

# expect CODE WHAT: the next reply has CODE.
expect() {
	reply
	[ "$code" = "$1" ] && return 0
	fail "$2: reply $code, expected $1: ${reply%$'\n'}"
}

# end_bs: closes the pipes and waits; sets $bs_rc.
end_bs() {
	exec {bs_in}>&- {bs_out}<&-
	bs_rc=0
	wait "$bs_pid" || bs_rc=$?
}

check "-bs: Alpine's dialog, one message with dot-stuffed lines"
# What the client means (CRLF, as SMTP carries it) and what it sends (dot-stuffed).
printf 'From: Alice <alice@gmail.com>\r\nTo: bob@example.org\r\nSubject: via -bs\r\n\r\n.leading dot\r\n.\r\n..two dots\r\nlast line\r\n' >"$T/expect1"
start_bs
expect 220 "greeting"
[[ $reply == 220\ *ESMTP* ]] || fail "greeting is not an ESMTP 220: $reply"
send "EHLO client.example.org"
expect 250 "EHLO"
ehlo=$reply
grep -q '^250[- ]PIPELINING$' <<<"$ehlo" || fail "EHLO does not offer PIPELINING"
grep -q '^250[- ]8BITMIME$' <<<"$ehlo" || fail "EHLO does not offer 8BITMIME"
grep -Eq 'AUTH|STARTTLS' <<<"$ehlo" && fail "EHLO offers AUTH or STARTTLS: $ehlo"
send "MAIL FROM:<alice@gmail.com>"
expect 250 "MAIL"
send "RCPT TO:<bob@example.org>"
expect 250 "RCPT 1"
send "RCPT TO:<carol@example.net>"
expect 250 "RCPT 2"
send "DATA"
expect 354 "DATA"
send "From: Alice <alice@gmail.com>" "To: bob@example.org" "Subject: via -bs" "" \
	"..leading dot" ".." "...two dots" "last line" "."
expect 250 "end of data"
qid=$(sed -n 's/^250 .*queued as \([0-9A-Z]*\)$/\1/p' <<<"$reply")
send "QUIT"
expect 221 "QUIT"
end_bs
[ "$bs_rc" -eq 0 ] || fail "sendmail -bs exited $bs_rc: $(cat "$T/bs.err")"
[ -s "$T/bs.err" ] && fail "stderr: $(cat "$T/bs.err")"
if single_msg; then
	[ -n "$qid" ] && [ "$M" = "$Q/msg/$qid" ] || fail "the reply names [$qid], the queue holds ${M##*/}"
	expect_envelope_sane "$M"
	expect_env "$M" sender alice@gmail.com
	expect_env "$M" rcpt bob@example.org carol@example.net
	expect_body "$M" "$T/expect1"
fi
expect_no_tmp

check "-bs: two transactions in one session, the second pipelined with BODY=8BITMIME"
printf 'Subject: one\r\n\r\nfirst message\r\n' >"$T/expect1"
printf 'Subject: zwei\r\n\r\nGrüße, zweite Nachricht\r\n.\r\n' >"$T/expect2"
start_bs
expect 220 "greeting"
send "EHLO client.example.org"
expect 250 "EHLO"
send "MAIL FROM:<alice@gmail.com>" "RCPT TO:<one@example.org>" "DATA"
expect 250 "MAIL 1"
expect 250 "RCPT 1"
expect 354 "DATA 1"
send "Subject: one" "" "first message" "."
expect 250 "end of data 1"
id1=$(sed -n 's/^250 .*queued as \([0-9A-Z]*\)$/\1/p' <<<"$reply")
send "MAIL FROM:<> BODY=8BITMIME" "RCPT TO:<two@example.org>" "DATA"
expect 250 "MAIL 2"
expect 250 "RCPT 2"
expect 354 "DATA 2"
send "Subject: zwei" "" "Grüße, zweite Nachricht" ".." "." "QUIT"
expect 250 "end of data 2"
id2=$(sed -n 's/^250 .*queued as \([0-9A-Z]*\)$/\1/p' <<<"$reply")
expect 221 "QUIT"
end_bs
[ "$bs_rc" -eq 0 ] || fail "sendmail -bs exited $bs_rc: $(cat "$T/bs.err")"
if expect_count 2; then
	[ -n "$id1" ] && [ -n "$id2" ] && [ "$id1" != "$id2" ] || fail "queue IDs in the replies: [$id1] [$id2]"
	if [ -f "$Q/msg/$id1" ] && [ -f "$Q/msg/$id2" ]; then
		expect_env "$Q/msg/$id1" sender alice@gmail.com
		expect_env "$Q/msg/$id1" rcpt one@example.org
		expect_body "$Q/msg/$id1" "$T/expect1"
		envelope "$Q/msg/$id2" | grep -qx 'sender ' || fail "the null sender <> is not kept as such"
		expect_env "$Q/msg/$id2" rcpt two@example.org
		expect_body "$Q/msg/$id2" "$T/expect2"
	else
		fail "the IDs in the replies are not in msg/: $id1 $id2 vs $(msg_ids | tr '\n' ' ')"
	fi
fi

check "-bs: errors: AUTH, STARTTLS, bad sequence, unknown command, RSET"
start_bs
expect 220 "greeting"
send "EHLO client.example.org"
expect 250 "EHLO"
send "AUTH PLAIN AGFsaWNlAHNlY3JldA=="
reply
[[ $code == 5* ]] || fail "AUTH is not refused: $reply"
send "STARTTLS"
reply
[[ $code == 5* ]] || fail "STARTTLS is not refused: $reply"
send "RCPT TO:<bob@example.org>"
expect 503 "RCPT before MAIL"
send "DATA"
expect 503 "DATA before MAIL"
send "FROB"
expect 500 "unknown command"
send "MAIL FROM:<alice@gmail.com>" "RCPT TO:<bob@example.org>" "RSET" "DATA"
expect 250 "MAIL"
expect 250 "RCPT"
expect 250 "RSET"
expect 503 "DATA after RSET"
send "QUIT"
expect 221 "QUIT"
end_bs
[ "$bs_rc" -eq 0 ] || fail "sendmail -bs exited $bs_rc"
expect_empty_queue
expect_no_tmp

check "-bs: the client goes away in the middle of DATA: nothing queued"
start_bs
expect 220 "greeting"
send "HELO client" "MAIL FROM:<alice@gmail.com>" "RCPT TO:<bob@example.org>" "DATA"
expect 250 "HELO"
expect 250 "MAIL"
expect 250 "RCPT"
expect 354 "DATA"
send "Subject: cut short" "" "this message never gets its final dot"
end_bs
expect_empty_queue
expect_no_tmp

finish
