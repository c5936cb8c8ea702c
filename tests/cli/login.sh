#!/bin/bash
# outbox login against the test server and a real gnome-keyring: a wrong
# password is refused and the previous one kept, the right one is stored and
# releases mail held for a login problem, --no-verify stores without
# contacting the server, and a configuration with password-command refuses.
CLI_KEYRING=1
. "${BASH_SOURCE%/*}/lib-cli.sh" || exit 99

start_server
write_config account.password-command=

check "login --no-verify stores the password without contacting the server (spaces of Gmail's groups dropped)"
conn_before=$(srv_count '^CONNECT$')
ob login --no-verify <<<"abcd efgh ijkl mnop"
expect_ob_rc 0
expect_eq "stored password" "$(kr_lookup)" abcdefghijklmnop
expect_eq "connections to the server" "$(srv_count '^CONNECT$')" "$conn_before"

check "login with a wrong password: refused (535), not stored, the previous password kept"
auth_fail_before=$(srv_count '^S 535 ')
ob login <<<"not-the-password"
[ "$rc" -ne 0 ] || fail "login exited 0 with a password the server refused"
expect_eq "535 replies the server sent" "$(srv_count '^S 535 ')" "$((auth_fail_before + 1))"
expect_eq "stored password" "$(kr_lookup)" abcdefghijklmnop
grep -v '^outboxd: ' "$T/err" | grep -qF https://myaccount.google.com/apppasswords ||
	fail "no advice naming the app password page ($(_show_last))"

check "login with an empty password is refused and stores nothing"
ob login <<<""
expect_ob_rc 64
expect_eq "stored password" "$(kr_lookup)" abcdefghijklmnop

check "login with the right password (typed in groups, with spaces): checked, stored, account hold removed, held mail then delivered"
queue_msg "held for the login"
printf 'localhost said: 535 5.7.8 Username and Password not accepted.\n' >"$Q/account-hold"
stored_before=$(stored)
od_once
expect_eq "messages stored while the account is held" "$(stored)" "$stored_before"
expect_count 1
auth_ok_before=$(srv_count '^S 235 ')
ob login <<<"${PW:0:5} ${PW:5:5} ${PW:10}"
expect_ob_rc 0
expect_eq "AUTH accepted by the server" "$(srv_count '^S 235 ')" "$((auth_ok_before + 1))"
expect_eq "stored password" "$(kr_lookup)" "$PW"
expect_no_account_hold
err_has 'released'
od_once
expect_od_rc 0
expect_eq "messages stored after login (with the password from the keyring)" "$(stored)" "$((stored_before + 1))"
expect_empty_queue

check "login with password-command in the configuration refuses with 78 and stores nothing"
write_config
conn_before=$(srv_count '^CONNECT$')
ob login <<<"other-password"
expect_ob_rc 78
err_has 'password-command'
expect_eq "stored password" "$(kr_lookup)" "$PW"
expect_eq "connections to the server" "$(srv_count '^CONNECT$')" "$conn_before"

check "login without a configuration: 78, naming outbox setup"
rm -f "$XDG_CONFIG_HOME/outbox/config"
ob login <<<"$PW"
expect_ob_rc 78
err_has 'outbox setup'

stop_server
finish
