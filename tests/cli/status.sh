#!/bin/bash
# outbox status: exit 0 when all is well, 1 when something needs the user
# (no configuration, a failed message, an account hold, no password in the
# keyring), 78 for a broken configuration; the keyring, the queue summary,
# and the last delivery and the last error.
CLI_KEYRING=optional
. "${BASH_SOURCE%/*}/lib-cli.sh" || exit 99

fault_script '[{"on": "rcpt", "match": "<bad@", "reply": "550 5.1.1 No such user"}]'
start_server --script "$T/script.json"

check "no configuration: non-zero, says to run outbox setup"
rm -f "$XDG_CONFIG_HOME/outbox/config"
ob status
expect_ob_rc 1
out_has '^Account: +not set up: run outbox setup'
out_has '^Service: .*no user manager'

check "a broken configuration: 78 with the file and line"
printf '[account]\naddress = alice@gmail.com\nport = many\n' >"$XDG_CONFIG_HOME/outbox/config"
ob status
expect_ob_rc 78
grep -q "$XDG_CONFIG_HOME/outbox/config:3" "$T/err" || fail "the error does not name file:line ($(_show_last))"

check "password-command configuration, no queue: 0"
write_config
ob status
expect_ob_rc 0
out_has "^Account: +$ACCOUNT via localhost:$PORT\$"
out_has '^Password: +from password-command'
out_has '^Queue: +0 messages$'
ob status extra
expect_ob_rc 64

check "password-command configuration, a message delivered: 0, with the Last sent line"
queue_msg "status 1" bob@example.com
od_once
expect_od_rc 0
id=$(sed -n 's/^sent\t[0-9]*\t\([0-9A-Z]*\)\t.*/\1/p' "$Q/last" 2>/dev/null)
[ -n "$id" ] || fail "no sent line in $Q/last: $(cat "$Q/last" 2>&1)"
ob status
expect_ob_rc 0
out_has "^Last sent: .*$id"
out_has '^Queue: +0 messages$'

step "a failed message: 1, counted as failed"
queue_msg "status 2" bad@example.com
od_once
ob status
expect_ob_rc 1
out_has '^Queue: +[0-9]+ messages? \(.*1 failed\)'

check "an account hold: 1, with the reason"
queue_msg "status 3" bob@example.com
printf 'localhost said: 534 5.7.9 Application-specific password required.\n' >"$Q/account-hold"
ob status
expect_ob_rc 1
out_has '^Held: +localhost said: 534 5\.7\.9 Application-specific password required\.'

check "the last error is shown (server down)"
write_config account.port="$(free_port)"
queue_msg "status 4" bob@example.com
od_once
ob status
out_has '^Last error: '
write_config

if [ "$HAVE_KEYRING" != 1 ]; then
	echo "no keyring here: the Keyring line is not checked"
	stop_server
	finish
fi

check "keyring configuration with a password stored: 0, keyring unlocked"
write_config account.password-command=
ob login --no-verify <<<"$PW"
expect_ob_rc 0
ob status
expect_ob_rc 0
out_has '^Keyring: +unlocked'

check "keyring configuration without a password stored: 1, says to run outbox login"
kr_clear
ob status
expect_ob_rc 1
out_has '^Keyring: +no password stored'
out_has 'outbox login'
out_lacks '[Uu]nlock your keyring'

stop_server
finish
