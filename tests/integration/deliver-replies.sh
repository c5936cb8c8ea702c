#!/bin/bash
# Delivery against the server's replies: per-recipient state (an accepted
# recipient is never sent the message again), temporary and permanent
# refusals, Gmail's daily limit, size limits, bounce reports.
. "${BASH_SOURCE%/*}/lib.sh"
. "${BASH_SOURCE%/*}/lib-deliver.sh"

# script JSON: the fault script for the next start_server.
script() {
	printf '%s\n' "$1" >"$T/script.json"
}

check "one recipient 550, the other accepted: failed for that one only, never resent to the other, bounce to the account"
script '[{"on": "rcpt", "match": "<bad@", "reply": "550 5.1.1 The email account that you tried to reach does not exist."}]'
start_server --script "$T/script.json"
write_config
queue_msg "partial" good@example.com bad@example.com
single_msg
id=${M##*/}
od_once
expect_od_rc 75
expect_eq "deliveries to good@" "$(rcpt_deliveries good@example.com)" 1
expect_eq "deliveries to bad@" "$(rcpt_deliveries bad@example.com)" 0
grep -qP '^rcpt\tsent\t[0-9]+\tgood@example\.com\t' "$Q/state/$id" || fail "good@ is not recorded as sent: $(state_of "$id" | grep '^rcpt')"
grep -qP '^rcpt\tfailed\t[0-9]+\tbad@example\.com\t550 5\.1\.1 ' "$Q/state/$id" || fail "bad@ is not recorded as failed with the reply: $(state_of "$id" | grep '^rcpt')"
[ -f "$Q/msg/$id" ] || fail "the failed message was removed from the queue"
expect_count 2	# the message, kept as failed, and the bounce report
# The next run sends the bounce report and nothing else.
od_once
expect_od_rc 0
expect_eq "deliveries to good@ after a second run" "$(rcpt_deliveries good@example.com)" 1
expect_eq "deliveries to bad@ after a second run" "$(rcpt_deliveries bad@example.com)" 0
expect_eq "bounce reports to the account" "$(rcpt_deliveries "$ACCOUNT")" 1
b=$(grep -l '^Subject: Undelivered Mail' "$SDIR"/mail/*.eml 2>/dev/null | head -1)
if [ -n "$b" ]; then
	expect_eq "bounce MAIL FROM" "$(json_of "$(basename "$b" .eml | sed 's/^0*//')" mail_from)" '""'
	grep -q 'bad@example\.com.*550 5\.1\.1' "$b" || fail "the bounce does not name bad@ and the reply"
	grep -q "$id" "$b" || fail "the bounce does not name the queue ID $id"
	grep -q '^Subject: partial' "$b" || fail "the bounce does not quote the message's headers"
else
	fail "no bounce report stored"
fi
[ -f "$Q/msg/$id" ] || fail "the failed message left the queue"
expect_count 1
# A failed message is not retried on its own, even once the server would accept.
stop_server
start_server
write_config
od_once
expect_eq "messages stored by a server that accepts everything" "$(stored)" 0
expect_count 1
stop_server

check "one recipient 450, the other accepted: the retry goes to the deferred one only"
script '[{"on": "rcpt", "match": "<later@", "reply": "450 4.2.1 The user you are trying to contact is receiving mail too quickly.", "times": 1}]'
start_server --script "$T/script.json"
write_config
queue_msg "per-recipient" good@example.com later@example.com
single_msg
id=${M##*/}
od_once
expect_od_rc 75
expect_eq "deliveries to good@" "$(rcpt_deliveries good@example.com)" 1
expect_eq "deliveries to later@" "$(rcpt_deliveries later@example.com)" 0
grep -qP '^rcpt\tdeferred\t[0-9]+\tlater@example\.com\t450 4\.2\.1 ' "$Q/state/$id" || fail "later@ not deferred: $(state_of "$id" | grep '^rcpt')"
expect_state_lacks '^rcpt	failed'
force_due
od_once
expect_od_rc 0
expect_eq "deliveries to good@ after the retry" "$(rcpt_deliveries good@example.com)" 1
expect_eq "deliveries to later@ after the retry" "$(rcpt_deliveries later@example.com)" 1
expect_eq "RCPT commands for good@ over both runs" "$(srv_count '^C RCPT TO:<good@')" 1
expect_empty_queue
stop_server

check "421 at MAIL (connection closed): deferred with a retry time, then delivered once"
script '[{"on": "mail", "reply": "421 4.7.0 Try again later, closing connection.", "close": true, "times": 1}]'
start_server --script "$T/script.json"
write_config
queue_msg "421 first"
single_msg
id=${M##*/}
od_once
expect_od_rc 75
expect_eq "messages stored" "$(stored)" 0
expect_count 1
expect_state_has '^rcpt	deferred	[0-9]+	bob@example\.com	421 4\.7\.0 '
expect_state_lacks '^rcpt	(failed|sent)'
next=$(state_of "$id" | sed -n 's/^next\t//p')
[ -n "$next" ] && [ "$next" -gt "$(date +%s)" ] || fail "no retry time in the future: next=[$next]"
# Not due yet: another run leaves it alone and does not even connect.
c=$(srv_count '^CONNECT$')
od_once
expect_od_rc 75
expect_eq "connections while the message is not due" "$(srv_count '^CONNECT$')" "$c"
force_due
od_once
expect_od_rc 0
expect_eq "copies stored after the retry" "$(stored '^Subject: 421 first')" 1
expect_empty_queue
stop_server

check "550 5.4.5 (Gmail's daily limit), at MAIL and at the end of data: deferred, not failed, no bounce"
script '[{"on": "mail", "reply": "550 5.4.5 Daily user sending limit exceeded.", "times": 1},
 {"on": "data-end", "match": "Subject: limit at end", "reply": "550 5.4.5 Daily user sending limit exceeded. For more information,\n5.4.5 go to https://support.google.com/ - gsmtp", "times": 1}]'
start_server --script "$T/script.json"
write_config
queue_msg "limit at mail"
queue_msg "limit at end"
od_once
expect_od_rc 75
expect_count 2
expect_eq "messages stored" "$(stored)" 0
expect_eq "deferred recipients" "$(state_all | grep -cP '^rcpt\tdeferred\t[0-9]+\tbob@example\.com\t550 5\.4\.5 ')" 2
expect_state_lacks '^rcpt	failed'
force_due
od_once
expect_od_rc 0
expect_eq "messages stored after the retry" "$(stored)" 2
expect_empty_queue
stop_server

check "552 5.3.4 at the end of data: failed, kept, reported"
script '[{"on": "data-end", "reply": "552 5.3.4 Your message exceeded Google'"'"'s message size limits.", "times": 1}]'
start_server --script "$T/script.json"
write_config
queue_msg "too big"
single_msg
id=${M##*/}
od_once
expect_eq "messages stored" "$(stored)" 0
grep -qP '^rcpt\tfailed\t[0-9]+\tbob@example\.com\t552 5\.3\.4 ' "$Q/state/$id" || fail "not failed with 552 5.3.4: $(state_of "$id" | grep '^rcpt')"
[ -f "$Q/msg/$id" ] || fail "the failed message left the queue"
expect_count 2	# and the bounce report
grep -q "failed for good" "$T/od.err" || fail "no log line says the message failed"
stop_server

check "SIZE smaller than the message: failed before MAIL and DATA"
start_server --size 4000
write_config
{
	printf 'Subject: over size\nTo: bob@example.com\n\n'
	for i in $(seq 1 100); do printf 'line %03d of a message that is larger than the limit\n' "$i"; done
} | "$SM" -i bob@example.com || fail "sendmail failed"
single_msg
id=${M##*/}
od_once
expect_eq "MAIL commands" "$(srv_count '^C MAIL ')" 0
expect_eq "DATA commands" "$(srv_count '^C (DATA|BDAT)')" 0
grep -qP '^rcpt\tfailed\t[0-9]+\tbob@example\.com\t.*size' "$Q/state/$id" || fail "not failed for its size: $(state_of "$id" | grep '^rcpt')"
[ -f "$Q/msg/$id" ] || fail "the failed message left the queue"
stop_server

finish
