#!/bin/bash
# Delivery against the server's replies, over both ways of sending (CHUNKING
# pipelined across messages, as with Gmail, and DATA): per-recipient state
# (an accepted recipient is never sent the message again), temporary and
# permanent refusals, Gmail's daily limit, size limits, bounce reports, a
# message whose every recipient is refused followed by others in the same
# pipeline, a chunk refused mid-message, recipient caps, SMTPUTF8.
. "${BASH_SOURCE%/*}/lib.sh"
. "${BASH_SOURCE%/*}/lib-deliver.sh"

# script JSON: the fault script for the next start_server.
script() {
	printf '%s\n' "$1" >"$T/script.json"
}

for mode in chunking data; do
	set_mode $mode

	check "[$MODE] one recipient 550, the other accepted: failed for that one only, never resent to the other, bounce to the account"
	script '[{"on": "rcpt", "match": "<bad@", "reply": "550 5.1.1 The email account that you tried to reach does not exist."}]'
	start_server "${MODE_ARGS[@]}" --script "$T/script.json"
	write_config
	queue_msg "partial" good@example.com bad@example.com
	single_msg
	id=${M##*/}
	od_once
	expect_eq "deliveries to good@" "$(rcpt_deliveries good@example.com)" 1
	expect_eq "deliveries to bad@" "$(rcpt_deliveries bad@example.com)" 0
	grep -qP '^rcpt\tsent\t[0-9]+\tgood@example\.com\t' "$Q/state/$id" || fail "good@ is not recorded as sent: $(state_of "$id" | grep '^rcpt')"
	grep -qP '^rcpt\tfailed\t[0-9]+\tbad@example\.com\t550 5\.1\.1 ' "$Q/state/$id" || fail "bad@ is not recorded as failed with the reply: $(state_of "$id" | grep '^rcpt')"
	[ -f "$Q/msg/$id" ] || fail "the failed message was removed from the queue"
	# Another run: the bounce report goes out (if it has not yet), nothing else.
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
	start_server "${MODE_ARGS[@]}"
	write_config
	od_once
	expect_eq "messages stored by a server that accepts everything" "$(stored)" 0
	expect_count 1
	stop_server

	check "[$MODE] one recipient 450, the other accepted: the retry goes to the deferred one only"
	script '[{"on": "rcpt", "match": "<later@", "reply": "450 4.2.1 The user you are trying to contact is receiving mail too quickly.", "times": 1}]'
	start_server "${MODE_ARGS[@]}" --script "$T/script.json"
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

	check "[$MODE] 421 at MAIL (connection closed): deferred with a retry time, then delivered once"
	script '[{"on": "mail", "reply": "421 4.7.0 Try again later, closing connection.", "close": true, "times": 1}]'
	start_server "${MODE_ARGS[@]}" --script "$T/script.json"
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

	check "[$MODE] 550 5.4.5 (Gmail's daily limit), at MAIL and at the end of data: deferred, not failed, no bounce"
	script '[{"on": "mail", "reply": "550 5.4.5 Daily user sending limit exceeded.", "times": 1},
	 {"on": "data-end", "match": "Subject: limit at end", "reply": "550 5.4.5 Daily user sending limit exceeded. For more information,\n5.4.5 go to https://support.google.com/ - gsmtp", "times": 1}]'
	start_server "${MODE_ARGS[@]}" --script "$T/script.json"
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

	check "[$MODE] 552 5.3.4 at the end of data: failed, kept, reported"
	script '[{"on": "data-end", "reply": "552 5.3.4 Your message exceeded Google'"'"'s message size limits.", "times": 1}]'
	start_server "${MODE_ARGS[@]}" --script "$T/script.json"
	write_config
	queue_msg "too big"
	single_msg
	id=${M##*/}
	od_once
	expect_eq "deliveries to bob@" "$(rcpt_deliveries bob@example.com)" 0
	grep -qP '^rcpt\tfailed\t[0-9]+\tbob@example\.com\t552 5\.3\.4 ' "$Q/state/$id" || fail "not failed with 552 5.3.4: $(state_of "$id" | grep '^rcpt')"
	[ -f "$Q/msg/$id" ] || fail "the failed message left the queue"
	expect_eq "bounce reports to the account" "$(rcpt_deliveries "$ACCOUNT")" 1
	grep -q "failed for good" "$T/od.err" || fail "no log line says the message failed"
	stop_server

	check "[$MODE] a message whose every recipient is refused, then others in the same session: each of those arrives once, with its own envelope"
	script '[{"on": "rcpt", "match": "<bad@", "reply": "550 5.1.1 The email account that you tried to reach does not exist."}]'
	start_server "${MODE_ARGS[@]}" --script "$T/script.json"
	write_config
	queue_msg "all refused" bad@example.com
	queue_msg "after one" -f list-one@example.org one@example.com
	queue_msg "after two" -f list-two@example.org two@example.com
	queue_msg "partly refused" bad@example.com three@example.com
	queue_msg "after three" -f list-four@example.org four@example.com
	od_once
	for i in one two three four; do
		expect_eq "deliveries to $i@" "$(rcpt_deliveries "$i@example.com")" 1
	done
	expect_eq "deliveries to bad@" "$(rcpt_deliveries bad@example.com)" 0
	"$SPY" - "$SDIR/mail" <<-'PY' || fail "a message left with another message's envelope"
	import glob, json, os, sys
	want = {"one@example.com": "list-one@example.org", "two@example.com": "list-two@example.org",
	        "three@example.com": "alice@gmail.com", "four@example.com": "list-four@example.org"}
	ok = True
	for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
	    m = json.load(open(f))
	    for r in m["rcpt_tos"]:
	        if r in want and m["mail_from"] != want[r]:
	            print(f"    {os.path.basename(f)}: to {r} from {m['mail_from']}, expected {want[r]}")
	            ok = False
	sys.exit(0 if ok else 1)
	PY
	expect_eq "failed messages kept" "$(state_all | grep -c '^rcpt	failed	[0-9]*	bad@')" 2
	stop_server
done

check "[chunking] a BDAT chunk refused in the middle of a message (451, every try): deferred by that reply, not left due"
R='{"on": "bdat", "reply": "451 4.3.0 Mail server temporarily rejected message.", "times": 1}'
N='{"on": "bdat", "times": 1}'
# The first chunk of each try is refused; the server then answers the rest with 503 (no transaction).
script "[$R, $N, $R, $N, $R, $N]"
start_server --script "$T/script.json"
write_config
queue_msg "chunk refused"
single_msg
id=${M##*/}
od_once
expect_od_rc 75
expect_eq "messages stored" "$(stored)" 0
grep -qP '^rcpt\tdeferred\t[0-9]+\tbob@example\.com\t451 4\.3\.0 ' "$Q/state/$id" 2>/dev/null ||
	fail "not deferred with the server's 451: $(state_of "$id" | tr '\t\n' ' |')"
next=$(state_of "$id" | sed -n 's/^next\t//p')
[ -n "$next" ] && [ "$next" -gt "$(date +%s)" ] || fail "due again at once (a daemon would resend it every few seconds): next=[$next]"
stop_server
start_server
write_config
force_due
od_once
expect_od_rc 0
expect_eq "copies stored once the server takes it" "$(stored '^Subject: chunk refused')" 1
expect_empty_queue
stop_server

for mode in chunking data; do
	set_mode $mode

	check "[$MODE] 150 recipients: split into transactions of at most 100, each recipient once"
	start_server "${MODE_ARGS[@]}"
	write_config
	rcpts=()
	for i in $(seq 1 150); do rcpts+=("r$i@example.org"); done
	queue_msg "many recipients" "${rcpts[@]}"
	od_once
	expect_od_rc 0
	expect_eq "transactions" "$(srv_count '^C MAIL FROM:<alice')" 2
	"$SPY" - "$SDIR/mail" <<-'PY' || fail "not every recipient exactly once, or a transaction over 100"
	import collections, glob, json, os, sys
	seen = collections.Counter()
	for f in glob.glob(os.path.join(sys.argv[1], "*.json")):
	    r = json.load(open(f))["rcpt_tos"]
	    if len(r) > 100:
	        print(f"    {os.path.basename(f)}: {len(r)} recipients"); sys.exit(1)
	    seen.update(r)
	want = {f"r{i}@example.org" for i in range(1, 151)}
	bad = [a for a in want if seen[a] != 1] + [a for a in seen if a not in want]
	if bad:
	    print("    wrong counts:", sorted(bad)[:5]); sys.exit(1)
	PY
	expect_empty_queue
	stop_server

	check "[$MODE] the server takes only 3 recipients per message (452 4.5.3): the rest go later, each once"
	start_server "${MODE_ARGS[@]}" --max-rcpt 3
	write_config
	queue_msg "capped" a1@example.org a2@example.org a3@example.org a4@example.org a5@example.org
	od_once
	force_due
	od_once
	expect_od_rc 0
	for i in 1 2 3 4 5; do
		expect_eq "deliveries to a$i@" "$(rcpt_deliveries "a$i@example.org")" 1
	done
	expect_state_lacks '^rcpt	failed'
	expect_empty_queue
	stop_server

	check "[$MODE] a UTF-8 address goes with SMTPUTF8; without SMTPUTF8 at the server it fails (5.6.7)"
	start_server "${MODE_ARGS[@]}"
	write_config
	queue_msg "utf8 address" "j"$'\xc3\xb6'"rg@example.org"
	od_once
	expect_od_rc 0
	expect_eq "deliveries to the UTF-8 address" "$(rcpt_deliveries "j"$'\xc3\xb6'"rg@example.org")" 1
	json_of 1 mail_options 2>/dev/null | grep -q SMTPUTF8 || fail "MAIL without SMTPUTF8: $(json_of 1 mail_options 2>/dev/null)"
	stop_server
	start_server "${MODE_ARGS[@]}" --no-smtputf8
	write_config
	queue_msg "utf8 address refused" "j"$'\xc3\xb6'"rg@example.org"
	od_once
	expect_eq "messages stored" "$(rcpt_deliveries "j"$'\xc3\xb6'"rg@example.org")" 0
	expect_state_has '^rcpt	failed	[0-9]+	j.*rg@example\.org	.*SMTPUTF8'
	stop_server
done

check "SIZE smaller than the message: failed before MAIL (so before DATA or BDAT)"
start_server --size 4000
write_config
{
	printf 'Subject: over size\nTo: bob@example.com\n\n'
	for i in $(seq 1 100); do printf 'line %03d of a message that is larger than the limit\n' "$i"; done
} | "$SM" -i bob@example.com || fail "sendmail failed"
single_msg
id=${M##*/}
od_once
expect_eq "MAIL commands for it" "$(srv_count '^C MAIL FROM:<alice@gmail\.com>')" 0
expect_eq "deliveries to bob@" "$(rcpt_deliveries bob@example.com)" 0
expect_eq "RCPT commands for it" "$(srv_count '^C RCPT TO:<bob@')" 0
grep -qP '^rcpt\tfailed\t[0-9]+\tbob@example\.com\t.*size' "$Q/state/$id" || fail "not failed for its size: $(state_of "$id" | grep '^rcpt')"
[ -f "$Q/msg/$id" ] || fail "the failed message left the queue"
stop_server

finish
