#!/bin/bash
# SMTP AUTH mechanisms: LOGIN where it is all the server offers, XOAUTH2 with
# token-command, a refused token holds the queue, and no common mechanism
# holds it too (never sends, never bounces).
. "${BASH_SOURCE%/*}/lib.sh"
. "${BASH_SOURCE%/*}/lib-deliver.sh"

check "AUTH LOGIN when the server offers only LOGIN"
start_server --auth-mechs LOGIN
write_config
queue_msg "via login"
od_once
expect_od_rc 0
expect_eq "messages stored" "$(stored)" 1
expect_eq "AUTH LOGIN commands" "$(srv_count '^C AUTH LOGIN')" 1
expect_eq "AUTH PLAIN commands" "$(srv_count '^C AUTH PLAIN')" 0
stop_server

check "XOAUTH2 with token-command (the token is the server's password here)"
start_server --auth-mechs "PLAIN XOAUTH2"
write_config "account.password-command=" "account.token-command=echo $PW"
queue_msg "via xoauth2"
od_once
expect_od_rc 0
expect_eq "messages stored" "$(stored)" 1
expect_eq "AUTH XOAUTH2 commands" "$(srv_count '^C AUTH XOAUTH2')" 1
expect_no_account_hold
stop_server

check "a refused XOAUTH2 token holds the queue: no mail sent, none failed"
start_server --auth-mechs XOAUTH2
write_config "account.password-command=" "account.token-command=echo wrong-token"
queue_msg "bad token"
od_once
expect_eq "messages stored" "$(stored)" 0
expect_account_hold
expect_count 1
expect_state_lacks $'^rcpt\tfailed'
stop_server

check "a token-command that fails: nothing sent, the log names token-command"
rm -f "$Q/account-hold"
start_server --auth-mechs XOAUTH2
write_config "account.password-command=" "account.token-command=exit 3"
queue_msg "token command fails"
od_once
expect_eq "messages stored" "$(stored)" 0
expect_eq "connections" "$(srv_count '^CONNECT$')" 0
grep -q 'token-command failed' "$T/od.err" || fail "the log does not name token-command: $(cat "$T/od.err")"
grep -q 'password-command' "$T/od.err" && fail "the log blames password-command for token-command"
stop_server

check "token-command without XOAUTH2 on the server holds the queue with a clear reason"
rm -f "$Q/account-hold"
start_server --auth-mechs "PLAIN LOGIN"
write_config "account.password-command=" "account.token-command=echo $PW"
queue_msg "no xoauth2"
od_once
expect_eq "messages stored" "$(stored)" 0
expect_account_hold
grep -q "XOAUTH2" "$Q/account-hold" 2>/dev/null || fail "the hold does not say XOAUTH2 is missing: $(cat "$Q/account-hold" 2>/dev/null)"
stop_server

check "no mechanism in common holds the queue"
rm -f "$Q/account-hold"
start_server --auth-mechs CRAM-MD5
write_config
queue_msg "cram only"
od_once
expect_eq "messages stored" "$(stored)" 0
expect_account_hold
grep -q "no common authentication mechanism" "$Q/account-hold" 2>/dev/null ||
	fail "the hold does not say why: $(cat "$Q/account-hold" 2>/dev/null)"
expect_state_lacks $'^rcpt\tfailed'
stop_server

finish
