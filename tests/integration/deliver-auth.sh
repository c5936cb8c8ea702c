#!/bin/bash
# Credentials: a refused login holds the whole queue (account-hold) without
# burning retries or bouncing, and no further login is tried while held; a
# 530 in the middle of a session holds too, and nothing is lost or sent
# twice; 454 backs off for long; password-command supplies the password, and
# a failing one holds the queue without connecting; so does outbox-desktop
# (here a stand-in beside a copy of outboxd): its exit status and its line of
# output say why.
. "${BASH_SOURCE%/*}/lib.sh"
. "${BASH_SOURCE%/*}/lib-deliver.sh"

# expect_nothing_decided: no recipient of any queued message was sent or failed.
expect_nothing_decided() {
	expect_state_lacks '^rcpt	(failed|sent)'
}

check "535 5.7.8 at AUTH: account-hold, nothing delivered or failed; no login while held; released when the hold goes"
start_server
write_config "account.password-command=echo wrong-password"
queue_msg "held one"
queue_msg "held two"
od_once
expect_od_rc 75
expect_account_hold
grep -q '535 5\.7\.8' "$Q/account-hold" 2>/dev/null || fail "account-hold does not give the reply: $(cat "$Q/account-hold" 2>/dev/null)"
grep -q 'outbox login' "$Q/account-hold" 2>/dev/null || fail "account-hold does not tell the user to run outbox login"
expect_eq "messages stored" "$(stored)" 0
expect_eq "login attempts" "$(srv_count '^C AUTH ')" 1
expect_count 2
expect_nothing_decided
expect_state_lacks '^attempts	[1-9]'
c=$(srv_count '^CONNECT$')
od_once
expect_od_rc 75
expect_eq "connections while held" "$(srv_count '^CONNECT$')" "$c"
expect_count 2
# The user fixes the password and the hold is lifted (what outbox login does).
write_config
rm -f "$Q/account-hold"
od_once
expect_od_rc 0
expect_eq "messages stored after the release" "$(stored)" 2
expect_empty_queue
expect_no_account_hold
stop_server

for mode in chunking data; do
	set_mode $mode
	check "[$MODE] 530 5.7.0 at the MAIL of message 3 of 5: queue held, none failed, each message exactly once after the release"
	printf '%s\n' '[{"on": "mail", "skip": 2, "times": 1, "reply": "530 5.7.0 Authentication Required."}]' >"$T/script.json"
	start_server "${MODE_ARGS[@]}" --script "$T/script.json"
	write_config
	for i in 1 2 3 4 5; do
		queue_msg "mid $i"
	done
	od_once
	expect_od_rc 75
	expect_account_hold
	expect_state_lacks '^rcpt	(failed|deferred)'
	expect_eq "copies of message 3" "$(stored '^Subject: mid 3')" 0
	rm -f "$Q/account-hold"
	od_once
	expect_od_rc 0
	for i in 1 2 3 4 5; do
		expect_eq "copies of message $i" "$(stored "^Subject: mid $i")" 1
	done
	expect_empty_queue
	stop_server

	check "[$MODE] 535 5.7.8 to the RCPT of message 2 of 3: queue held, none failed, each message exactly once after the release"
	printf '%s\n' '[{"on": "rcpt", "skip": 1, "times": 1, "reply": "535 5.7.8 Username and Password not accepted."}]' >"$T/script.json"
	start_server "${MODE_ARGS[@]}" --script "$T/script.json"
	write_config
	for i in 1 2 3; do
		queue_msg "rcpt $i"
	done
	od_once
	expect_od_rc 75
	expect_account_hold
	expect_state_lacks '^rcpt	failed'
	expect_eq "copies of message 2" "$(stored '^Subject: rcpt 2')" 0
	rm -f "$Q/account-hold"
	force_due
	od_once
	expect_od_rc 0
	for i in 1 2 3; do
		expect_eq "copies of message $i" "$(stored "^Subject: rcpt $i")" 1
	done
	expect_empty_queue
	stop_server
done

check "534 5.7.9 (application-specific password required) holds the queue too"
printf '%s\n' '[{"on": "auth", "reply": "534 5.7.9 Application-specific password required. Learn more at https://support.google.com/mail/?p=InvalidSecondFactor"}]' >"$T/script.json"
start_server --script "$T/script.json"
write_config
queue_msg "app password"
od_once
expect_od_rc 75
expect_account_hold
expect_eq "messages stored" "$(stored)" 0
expect_count 1
expect_nothing_decided
stop_server

check "454 4.7.0 too many login attempts: no hold, deferred for long"
printf '%s\n' '[{"on": "auth", "reply": "454 4.7.0 Too many login attempts, please try again later.", "times": 1}]' >"$T/script.json"
start_server --script "$T/script.json"
write_config
queue_msg "backoff"
single_msg
od_once
expect_od_rc 75
expect_no_account_hold
expect_count 1
expect_nothing_decided
next=$(state_of "${M##*/}" | sed -n 's/^next\t//p')
now=$(date +%s)
[ -n "$next" ] && [ "$next" -ge $((now + 1800)) ] || fail "not left alone for long: next=[$next], now=$now"
stop_server

check "password-command supplies the password"
start_server
write_config "account.password-command=echo $PW"
queue_msg "password command"
od_once
expect_od_rc 0
expect_eq "messages stored" "$(stored)" 1
expect_empty_queue

check "a password-command with more than 4 KB of output (a pass entry with notes): its first line is the password"
write_config "account.password-command=echo $PW; seq 5000"
queue_msg "long password-command output"
od_once
expect_od_rc 0
expect_eq "messages stored" "$(stored '^Subject: long password-command output')" 1
expect_empty_queue

check "a password-command gets SIGPIPE back at its default (outboxd ignores it for itself): its pipelines end quietly"
write_config "account.password-command=echo $PW; seq 100000 | head -n 1 >/dev/null"
queue_msg "sigpipe"
od_once
expect_od_rc 0
expect_eq "messages stored" "$(stored '^Subject: sigpipe')" 1
expect_empty_queue
grep -q 'Broken pipe' "$T/od.err" && fail "a write to a closed pipe in password-command was an error, not SIGPIPE"

# (seq -s '' 2000: one line of 6,893 digits, longer than any password.)
for cmd in "exit 3" "true" "echo $PW; exit 1" "seq -s '' 2000"; do
	check "a failing password-command ($cmd) holds the queue without connecting"
	write_config "account.password-command=$cmd"
	queue_msg "no password"
	c=$(srv_count '^CONNECT$')
	od_once
	expect_od_rc 75
	expect_eq "connections" "$(srv_count '^CONNECT$')" "$c"
	expect_count 1
	expect_nothing_decided
	expect_no_account_hold
	grep -q 'password-command' "$T/od.err" || fail "the log does not name password-command: $(cat "$T/od.err")"
	write_config
	od_once
	expect_od_rc 0
	expect_empty_queue
done

# outboxd runs the outbox-desktop beside its own executable: a copy of outboxd
# with a stand-in that records its arguments and answers as told.
mkdir -p "$T/libexec"
cp "$OD" "$T/libexec/outboxd"
helper() {
	printf '#!/bin/sh\necho "$*" >>%q\n%s\n' "$T/helper.args" "$1" >"$T/libexec/outbox-desktop"
	chmod 755 "$T/libexec/outbox-desktop"
	: >"$T/helper.args"
}

check "the keyring's password from outbox-desktop (password ADDRESS HOST, its first line of output)"
helper "printf '%s\\n' '$PW'"
write_config "account.password-command="
queue_msg "from the helper"
OD=$T/libexec/outboxd od_once
expect_od_rc 0
expect_eq "messages stored" "$(stored '^Subject: from the helper')" 1
expect_eq "the helper's arguments" "$(cat "$T/helper.args")" "password $ACCOUNT localhost"
expect_empty_queue

while IFS='|' read -r answer why; do
	check "outbox-desktop answers \"$answer\": held without connecting; the log says: $why"
	helper "$answer"
	queue_msg "no password from the helper"
	c=$(srv_count '^CONNECT$')
	OD=$T/libexec/outboxd od_once
	expect_od_rc 75
	expect_eq "connections" "$(srv_count '^CONNECT$')" "$c"
	expect_count 1
	expect_nothing_decided
	expect_no_account_hold
	grep -qF "holding 1 message: $why" "$T/od.err" || fail "the log does not say: $why"
done <<'EOF'
echo 'nothing stored (stand-in)'; exit 2|nothing stored (stand-in)
echo 'locked (stand-in)'; exit 3|locked (stand-in)
echo 'no service (stand-in)'; exit 4|no service (stand-in)
echo 'an unknown status'; exit 1|outbox-desktop failed (non-zero exit status)
exit 0|outbox-desktop failed (no output)
kill -9 $$|outbox-desktop failed (killed by signal 9)
EOF

check "an outbox-desktop that cannot be run: held, and the log says so"
printf '#!/nonexistent/sh\n' >"$T/libexec/outbox-desktop"
queue_msg "no helper"
OD=$T/libexec/outboxd od_once
expect_od_rc 75
expect_count 1
grep -qF "holding 1 message: outbox-desktop: cannot run $T/libexec/outbox-desktop" "$T/od.err" ||
	fail "the log does not say outbox-desktop cannot be run"

finish
