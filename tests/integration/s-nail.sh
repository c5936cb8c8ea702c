#!/bin/bash
# SPDX-License-Identifier: MIT
# s-nail (mail(1)) with mta= pointing at outbox-sendmail: it calls
# "sendmail -i [-F NAME -f ADDR] -- RCPTS" and pipes the message.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 99
need s-nail

head -c 5000 /dev/urandom >"$T/attachment.bin"
printf 'Hello from s-nail.\n.\nAfter a lone dot.\n' >"$T/body.txt"

check "s-nail: -r sets the envelope sender and full name, attachment kept"
w=$(argv_logger snail)
rc=0
s-nail -n -Sv15-compat -Smta="$w" -Ssendwait -Snosave -Sexpandaddr \
	-r 'Bob Sender <bob@example.org>' -s 'snail subject' -a "$T/attachment.bin" \
	rcpt@example.org other@example.net <"$T/body.txt" >"$T/snail.out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "s-nail exited $rc: $(head -c 300 "$T/snail.out")"
expect_argv snail -i -F 'Bob Sender' -f bob@example.org -- rcpt@example.org other@example.net
if single_msg; then
	expect_envelope_sane "$M"
	expect_env "$M" sender bob@example.org
	expect_env "$M" fullname 'Bob Sender'
	expect_env "$M" rcpt rcpt@example.org other@example.net
	body "$M" >"$T/msg.txt"
	grep -q '^Subject: snail subject$' "$T/msg.txt" || fail "no Subject line"
	grep -q '^From: Bob Sender <bob@example.org>$' "$T/msg.txt" || fail "no From line"
	grep -qx '\.' "$T/msg.txt" || fail "the lone '.' line is missing (-i ignored?)"
	grep -q '^After a lone dot\.$' "$T/msg.txt" || fail "the body was cut at the lone '.'"
	body "$M" | "$PY" -c '
import email, sys
m = email.message_from_binary_file(sys.stdin.buffer)
for p in m.walk():
    if p.get_filename() == "attachment.bin" and p["Content-Transfer-Encoding"] == "base64":
        sys.stdout.buffer.write(p.get_payload(decode=True)); sys.exit(0)
sys.exit(1)' >"$T/att.got" || fail "no base64 attachment.bin part"
	cmp -s "$T/att.got" "$T/attachment.bin" || fail "the decoded attachment differs"
fi

check "s-nail: plain send without -r (account sender)"
w=$(argv_logger snail2)
rc=0
s-nail -n -Sv15-compat -Smta="$w" -Ssendwait -Snosave -s 'second' rcpt@example.org \
	<"$T/body.txt" >"$T/snail.out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "s-nail exited $rc: $(head -c 300 "$T/snail.out")"
expect_argv snail2 -i -- rcpt@example.org
if single_msg; then
	expect_env "$M" sender
	expect_env "$M" rcpt rcpt@example.org
fi

finish
