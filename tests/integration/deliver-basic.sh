#!/bin/bash
# Delivery, the normal case: what the server receives is what the client
# queued, apart from the documented header changes; the envelope; one
# connection and one AUTH for many messages; an EHLO name Gmail accepts.
. "${BASH_SOURCE%/*}/lib.sh"
. "${BASH_SOURCE%/*}/lib-deliver.sh"

for mode in chunking data; do
	set_mode $mode
	VIA=BDAT
	[ $mode = data ] && VIA=DATA
	start_server "${MODE_ARGS[@]}"
	write_config

	check "[$MODE] a message arrives byte-exact apart from Bcc and the local Received (Date, Message-ID, From present)"
	# The input, with LF line ends as a mail client writes them.
	{
		printf 'Received: from localhost (localhost [127.0.0.1])\n\tby localhost (Postfix) with ESMTP id 4F2A1;\n\tMon, 2 Nov 2026 10:00:00 +0000\n'
		printf 'Received: from mail.example.net (mail.example.net [192.0.2.1])\n\tby mx.example.org with ESMTPS id x; Mon, 2 Nov 2026 09:59:00 +0000\n'
		printf 'From: Alice Example <alice@gmail.com>\n'
		printf 'To: Bob <bob@example.com>\nCc: carol@example.org\n'
		printf 'Bcc: Hidden One <secret@example.net>,\n hidden2@example.net\n'
		printf 'Date: Mon, 2 Nov 2026 10:00:00 +0000\nMessage-ID: <basic-1@example.com>\n'
		printf 'Subject: byte exact\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n'
		printf '\nfirst line\n.starts with a dot\n..two dots\n.\n...\ntrailing space   \ntab\tinside\n'
		printf 'Gr\303\274\303\237e, \303\274n\303\257c\303\266d\303\251\n\nFrom the start of a line\nlast line\n'
	} >"$T/in1"
	# What must arrive: the same minus Bcc and the local Received, CRLF line ends.
	{
		sed -n '4,5p' "$T/in1"		# the remote Received, folded
		sed -n '6,8p' "$T/in1"		# From, To, Cc
		sed -n '11,$p' "$T/in1"		# Date and the rest
	} | sed 's/$/\r/' >"$T/want1"
	run -t -i <"$T/in1"
	expect_ok
	od_once
	expect_od_rc 0
	expect_eq "messages stored" "$(stored)" 1
	if [ -f "$SDIR/mail/000001.eml" ]; then
		cmp -s "$SDIR/mail/000001.eml" "$T/want1" ||
			fail "the stored message differs from the expected bytes: $(diff <(od -c "$T/want1") <(od -c "$SDIR/mail/000001.eml") | head -8)"
		expect_eq "MAIL FROM (no -f: the account)" "$(json_of 1 mail_from)" '"alice@gmail.com"'
		expect_eq "RCPT list (-t: To, Cc, Bcc)" "$(json_of 1 rcpt_tos)" \
			'["bob@example.com", "carol@example.org", "secret@example.net", "hidden2@example.net"]'
		json_of 1 mail_options | grep -q 'BODY=8BITMIME' || fail "8-bit body sent without BODY=8BITMIME: $(json_of 1 mail_options)"
		expect_eq "AUTH user" "$(json_of 1 auth_user)" '"alice@gmail.com"'
		json_of 1 tls | grep -q '"TLS1\.[23]"' || fail "not TLS 1.2+: $(json_of 1 tls)"
	fi
	expect_empty_queue
	[ -z "$(ls -A "$Q/state" 2>/dev/null)" ] || fail "state/ not empty after delivery: $(ls "$Q/state")"

	check "[$MODE] Date, Message-ID and From are added only when missing; -f sets MAIL FROM; the rest is untouched"
	printf 'To: bob@example.com\nSubject: bare\nX-Custom: kept as is  \n\nbody\n' >"$T/in2"
	run -i -f list-owner@example.org bob@example.com <"$T/in2"
	expect_ok
	od_once
	expect_od_rc 0
	expect_eq "messages stored" "$(stored)" 2
	f=$SDIR/mail/000002.eml
	if [ -f "$f" ]; then
		for h in Date Message-ID From; do
			expect_eq "number of $h: fields" "$(grep -ci "^$h:" "$f")" 1
		done
		grep -q '^From: .*alice@gmail\.com' "$f" || fail "the added From: is not the account: $(grep -i '^From:' "$f")"
		grep -qE $'^Message-ID: <[^@ ]+@[^> ]+>\r$' "$f" || fail "malformed Message-ID: $(grep -i '^Message-ID:' "$f")"
		grep -qE $'^Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{1,2} [A-Z][a-z]{2} [0-9]{4} [0-9:]{8} [+-][0-9]{4}\r$' "$f" ||
			fail "malformed Date: $(grep -i '^Date:' "$f")"
		# Without the three added fields, the message is the input with CRLF.
		grep -viE '^(Date|Message-ID|From):' "$f" >"$T/got2"
		sed 's/$/\r/' "$T/in2" >"$T/want2"
		cmp -s "$T/got2" "$T/want2" || fail "the other bytes changed: $(diff <(od -c "$T/want2") <(od -c "$T/got2") | head -6)"
		expect_eq "MAIL FROM with -f" "$(json_of 2 mail_from)" '"list-owner@example.org"'
		expect_eq "RCPT list" "$(json_of 2 rcpt_tos)" '["bob@example.com"]'
	fi
	expect_empty_queue
	expect_via "$VIA"

	check "[$MODE] a large message (700 KB: several chunks, a 20 KB line, dots, CRLF and bare CR) arrives byte-exact"
	"$SPY" - "$T/in3" <<'PY'
import sys
with open(sys.argv[1], "wb") as f:
    f.write(b"Subject: large\nTo: bob@example.com\nDate: Mon, 2 Nov 2026 10:00:00 +0000\n"
            b"Message-ID: <large@example.com>\nFrom: alice@gmail.com\n\n")
    for i in range(12000):
        f.write(b"." * (i % 3) + b"line %05d " % i + b"x" * (i % 97) + (b"\r\n" if i % 5 == 0 else b"\n"))
    f.write(b"y" * 20000 + b"\n.\n..\nlone\rcr\nend\n")
PY
	# On the wire every line ends in CRLF (a bare CR ends a line too).
	"$SPY" -c 'import sys; d=open(sys.argv[1],"rb").read().replace(b"\r\n",b"\n").replace(b"\r",b"\n").replace(b"\n",b"\r\n"); open(sys.argv[2],"wb").write(d)' "$T/in3" "$T/want3"
	run -i bob@example.com <"$T/in3"
	expect_ok
	n_before=$(stored)
	od_once
	expect_od_rc 0
	expect_eq "messages stored" "$(stored)" $((n_before + 1))
	f=$(printf '%s/mail/%06d.eml' "$SDIR" $((n_before + 1)))
	if [ -f "$f" ]; then
		cmp -s "$f" "$T/want3" || fail "the large message differs: $(cmp "$f" "$T/want3" 2>&1 | head -1)"
	fi
	expect_empty_queue

	check "[$MODE] 20 messages go over one connection with one AUTH"
	before_conn=$(srv_count '^CONNECT$')
	before_auth=$(srv_count '^C AUTH ')
	for i in $(seq 1 20); do
		queue_msg "batch $i"
	done
	expect_count 20
	od_once
	expect_od_rc 0
	expect_eq "connections for 20 messages" "$(($(srv_count '^CONNECT$') - before_conn))" 1
	expect_eq "AUTH commands for 20 messages" "$(($(srv_count '^C AUTH ') - before_auth))" 1
	for i in $(seq 1 20); do
		n=$(stored "^Subject: batch $i"$'\r'"?\$")
		[ "$n" -eq 1 ] || fail "\"batch $i\" stored $n times"
	done
	expect_empty_queue
	expect_via "$VIA"
	stop_server
done

check "EHLO never says localhost: a server that refuses it (like Gmail) takes the mail"
start_server --gmail-ehlo
write_config
queue_msg "ehlo check"
od_once
expect_od_rc 0
expect_eq "messages stored" "$(stored)" 1
ehlo=$(json_of 1 ehlo 2>/dev/null)
echo "    EHLO name: $ehlo"
case $ehlo in
'"localhost"' | '"localhost.localdomain"' | '') fail "EHLO name is [$ehlo]" ;;
esac
[ "$(srv_count '^C (EHLO|HELO) localhost')" -eq 0 ] || fail "the client said EHLO localhost"
expect_empty_queue

finish
