#!/bin/bash
# outbox setup, non-interactive, against the test server and a real
# gnome-keyring: the configuration it writes, the password checked with the
# server before it is stored, the test message delivered in-process when no
# user manager runs, an existing configuration left alone, and a wrong
# password refused with advice and nothing stored.
CLI_KEYRING=1
. "${BASH_SOURCE%/*}/lib-cli.sh" || exit 99

CFG=$XDG_CONFIG_HOME/outbox/config

mode_of() { stat -c %a "$1" 2>/dev/null; }

# The AUTH of the verification waits 1.5 s, so the keyring can be looked at
# while the server holds the password but has not answered yet.
fault_script '[{"on": "auth", "delay": 1.5, "times": 1}]'
start_server --script "$T/script.json"

check "setup --address ... with the password on stdin: verified, stored, configured, test message delivered"
# The directory exists, as a user may have made it, with the usual 0755.
rm -f "$CFG"
mkdir -p "${CFG%/*}"
chmod 755 "${CFG%/*}"
rc=0
printf '%s\n' "$PW" | "$OB" setup --address "$ACCOUNT" --host localhost --port "$PORT" \
	--ca-file "$CERTS/ca.pem" >"$T/out" 2>"$T/err" &
setup_pid=$!
if wait_for 10 grep -q ' C AUTH ' "$SDIR/log"; then
	# The server has the AUTH and has not answered it: nothing may be stored yet.
	[ -z "$(kr_lookup)" ] || fail "the password was in the keyring before the server accepted it"
else
	fail "setup did not try AUTH with the server within 10 s"
fi
wait "$setup_pid" || rc=$?
expect_ob_rc 0
[ "$(kr_lookup)" = "$PW" ] || fail "secret-tool lookup gives [$(kr_lookup)], expected the password given"
[ -f "$CFG" ] || fail "no configuration written at $CFG"
expect_eq "configuration file mode" "$(mode_of "$CFG")" 600
expect_eq "configuration directory mode" "$(mode_of "${CFG%/*}")" 700
grep -qx "address = $ACCOUNT" "$CFG" || fail "the configuration lacks 'address = $ACCOUNT': $(tr '\n' '|' <"$CFG")"
grep -qx "host = localhost" "$CFG" || fail "the configuration lacks the host"
grep -qx "port = $PORT" "$CFG" || fail "the configuration lacks the port"
grep -qx "ca-file = $CERTS/ca.pem" "$CFG" || fail "the configuration lacks the ca-file"
# The order on the server: a verification session (AUTH, no MAIL), then the test message.
first_auth=$(grep -m1 ' C AUTH ' "$SDIR/log" | cut -d' ' -f1)
first_mail=$(grep -m1 ' C MAIL ' "$SDIR/log" | cut -d' ' -f1)
[ -n "$first_auth" ] || fail "no AUTH in the server log"
[ -n "$first_mail" ] || fail "no MAIL in the server log: the test message was not sent"
if [ -n "$first_auth" ] && [ -n "$first_mail" ]; then
	[ "$first_auth" -lt "$first_mail" ] ||
		fail "the password was not checked in a session of its own before the test message (AUTH in connection $first_auth, MAIL in $first_mail)"
fi
expect_eq "messages the server stored" "$(stored)" 1
if [ -f "$SDIR/mail/000001.json" ]; then
	expect_eq "RCPT of the test message" "$(json_of 1 rcpt_tos)" "[\"$ACCOUNT\"]"
	expect_eq "MAIL FROM of the test message" "$(json_of 1 mail_from)" "\"$ACCOUNT\""
	expect_eq "AUTH user" "$(json_of 1 auth_user)" "\"$ACCOUNT\""
	grep -q "^To: $ACCOUNT" "$SDIR/mail/000001.eml" || fail "the test message is not addressed to $ACCOUNT in To:"
fi
# The server's reply, as the server sent it, reaches the user.
reply=$(grep -m1 ' S 250 2\.0\.0 OK ' "$SDIR/log" | cut -d' ' -f3-)
[ -n "$reply" ] && grep -qF "$reply" "$T/out" ||
	fail "setup does not print the server's reply [$reply] ($(_show_last))"
grep -qi 'no systemd user manager' "$T/err" ||
	fail "setup does not say that no user manager runs ($(_show_last))"
expect_empty_queue
grep -q "^sent	" "$Q/last" 2>/dev/null || fail "no 'sent' line in $Q/last after the test message"
# The password appears nowhere but in the keyring.
leaks=$(grep -rlF -- "$PW" "$HOME" "$T/out" "$T/err" 2>/dev/null | grep -v "/keyrings/")
[ -z "$leaks" ] || fail "the password is written in: $leaks"

check "setup with an existing configuration and no options leaves it byte-identical"
cp -p "$CFG" "$T/config.before"
ob setup <<<"$PW"
expect_ob_rc 0
cmp -s "$CFG" "$T/config.before" || fail "the configuration changed: $(diff "$T/config.before" "$CFG" | head -5 | tr '\n' '|')"
[ "$(kr_lookup)" = "$PW" ] || fail "the stored password changed"
expect_eq "messages the server stored" "$(stored)" 2

check "setup with options, an existing configuration and no terminal keeps the configuration"
ob setup --address bob@gmail.com --port 1 <<<"$PW"
expect_ob_rc 0
cmp -s "$CFG" "$T/config.before" || fail "the configuration changed: $(diff "$T/config.before" "$CFG" | head -5 | tr '\n' '|')"
err_has 'Keeping'
expect_eq "messages the server stored" "$(stored)" 3

check "setup --address with a malformed address is refused and writes nothing"
rm -rf "$XDG_CONFIG_HOME/outbox"
ob setup --address not-an-address --host localhost --port "$PORT" <<<"$PW"
expect_ob_rc 64
[ ! -e "$CFG" ] || fail "a configuration was written for a malformed address"

check "setup with a wrong password (535): non-zero, advice with the app password URL, nothing stored"
kr_clear
[ -z "$(kr_lookup)" ] || fail "secret-tool clear did not clear the item"
before_auth_fail=$(srv_count '^S 535 ')
mails_before=$(srv_count '^C MAIL ')
rm -rf "$XDG_CONFIG_HOME/outbox"
ob setup --address "$ACCOUNT" --host localhost --port "$PORT" --ca-file "$CERTS/ca.pem" <<<wrong-password
[ "$rc" -ne 0 ] || fail "setup exited 0 with a wrong password"
expect_eq "mode of the configuration directory it made" "$(mode_of "${CFG%/*}")" 700
expect_eq "535 replies the server sent" "$(srv_count '^S 535 ')" "$((before_auth_fail + 1))"
[ -z "$(kr_lookup)" ] || fail "a password was stored after the server refused it: [$(kr_lookup)]"
# One line explains, with where to get an app password.
expl=$(grep -v '^outboxd: ' "$T/err" | grep -F 'https://myaccount.google.com/apppasswords')
[ -n "$expl" ] || fail "no explanation mentioning https://myaccount.google.com/apppasswords ($(_show_last))"
expect_eq "lines of explanation with the URL" "$(printf '%s\n' "$expl" | grep -c .)" 1
err_has '535'
expect_eq "MAIL commands after the refusal" "$(srv_count '^C MAIL ')" "$mails_before"
expect_empty_queue
expect_eq "messages the server stored" "$(stored)" 3

stop_server
finish
