#!/bin/bash
# SPDX-License-Identifier: MIT
# NeoMutt in batch mode hands its messages to outbox-sendmail: the default
# command line (-oem -oi -- RCPT), and the one with an envelope sender,
# 8BITMIME and DSN options (-B8BITMIME -f ADDR -N ... -R ...).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 99
need neomutt

head -c 6000 /dev/urandom >"$T/attachment.bin"
printf 'Hello from NeoMutt.\n.\nA line with only a dot came before this one.\n' >"$T/body.txt"

# attachment FILE OUT: the decoded attachment of the queued message FILE.
attachment() {
	body "$1" | "$PY" -c '
import email, sys
from email import policy
m = email.message_from_binary_file(sys.stdin.buffer, policy=policy.compat32)
for part in m.walk():
    if part.get_filename() == "attachment.bin":
        print(part.get("Content-Transfer-Encoding", ""), file=sys.stderr)
        sys.stdout.buffer.write(part.get_payload(decode=True))
        sys.exit(0)
sys.exit(1)
' >"$2" 2>"$T/cte"
}

check "neomutt: default command line, body and base64 attachment"
w=$(argv_logger neomutt1)
rc=0
neomutt -n -F /dev/null \
	-e "set sendmail=\"$w -oem -oi\"" -e 'unset record' -e 'set from=alice@gmail.com' \
	-s 'Batch subject' -a "$T/attachment.bin" -- rcpt@example.org <"$T/body.txt" \
	>"$T/neomutt.out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "neomutt exited $rc: $(head -c 300 "$T/neomutt.out")"
expect_argv neomutt1 -oem -oi -- rcpt@example.org
if single_msg; then
	expect_envelope_sane "$M"
	expect_env "$M" rcpt rcpt@example.org
	expect_env "$M" sender
	body "$M" >"$T/msg.txt"
	grep -q '^Subject: Batch subject$' "$T/msg.txt" || fail "no Subject line in the message"
	grep -q '^To: rcpt@example.org$' "$T/msg.txt" || fail "no To line in the message"
	# The body, including the lone "." line that -oi protects, is there as typed.
	grep -q '^Hello from NeoMutt\.$' "$T/msg.txt" || fail "the body text is missing"
	grep -qx '\.' "$T/msg.txt" || fail "the lone '.' line of the body is missing (-oi ignored?)"
	grep -q '^A line with only a dot came before this one\.$' "$T/msg.txt" ||
		fail "the body was cut at the lone '.' line"
	if attachment "$M" "$T/att.got"; then
		grep -qi base64 "$T/cte" || fail "the attachment is not base64 encoded: $(cat "$T/cte")"
		cmp -s "$T/att.got" "$T/attachment.bin" || fail "the decoded attachment differs from the file"
	else
		fail "no attachment.bin part in the queued message"
	fi
fi

check "neomutt: envelope sender, 8BITMIME and DSN (-B8BITMIME -f -N -R)"
w=$(argv_logger neomutt2)
printf 'Grüße aus Köln, 8-bit text.\n' >"$T/body8.txt"
rc=0
LC_ALL=C.UTF-8 neomutt -n -F /dev/null \
	-e "set sendmail=\"$w -oem -oi\"" -e 'unset record' -e 'set from=alice@gmail.com' \
	-e 'set use_envelope_from=yes' -e 'set envelope_from_address=bounce@example.org' \
	-e 'set use_8bitmime=yes' -e 'set send_charset=utf-8' \
	-e 'set dsn_notify="failure,delay"' -e 'set dsn_return=hdrs' \
	-s 'Grüße' -- one@example.org two@example.net <"$T/body8.txt" \
	>"$T/neomutt.out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "neomutt exited $rc: $(head -c 300 "$T/neomutt.out")"
expect_argv neomutt2 -oem -oi -B8BITMIME -f bounce@example.org -N failure,delay -R hdrs -- \
	one@example.org two@example.net
if single_msg; then
	expect_envelope_sane "$M"
	expect_env "$M" sender bounce@example.org
	expect_env "$M" rcpt one@example.org two@example.net
	body "$M" >"$T/msg.txt"
	grep -q '^Content-Transfer-Encoding: 8bit$' "$T/msg.txt" || fail "not sent as 8bit"
	grep -qF 'Grüße aus Köln, 8-bit text.' "$T/msg.txt" || fail "the 8-bit body is not there byte for byte"
fi

finish
