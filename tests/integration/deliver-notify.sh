#!/bin/bash
# A message that failed for good: the user gets a desktop notification
# (org.freedesktop.Notifications.Notify on the session bus, sent by
# outbox-desktop for outboxd, seen here by dbus-monitor since no notification
# daemon runs) and a bounce report in their own inbox; without a session bus,
# delivery goes on as before, and a notification helper that hangs holds
# outboxd up for a few seconds at most.
if [ -z "${OUTBOX_TEST_IN_DBUS:-}" ]; then
	for p in dbus-run-session dbus-monitor; do
		command -v "$p" >/dev/null || { echo "SKIP: $p is not installed"; exit 77; }
	done
	export OUTBOX_TEST_IN_DBUS=1
	exec dbus-run-session -- bash "$0" "$@" 2>&1
fi
. "${BASH_SOURCE%/*}/lib.sh"
. "${BASH_SOURCE%/*}/lib-deliver.sh"

printf '[{"on": "rcpt", "match": "nobody@", "reply": "550 5.1.1 The email account that you tried to reach does not exist."}]' >"$T/rules"
start_server --script "$T/rules"
write_config

check "a permanent failure sends a desktop notification and a bounce report to the account"
dbus-monitor --session "type='method_call',interface='org.freedesktop.Notifications'" >"$T/monitor.log" 2>&1 &
mon=$!
_od_pids+=("$mon")
sleep 0.3
queue_msg "to nobody" nobody@example.com
od_once
sleep 0.3
kill "$mon" 2>/dev/null
grep -q "member=Notify" "$T/monitor.log" || fail "no Notify call on the session bus: $(head -c 400 "$T/monitor.log")"
grep -q "Mail not delivered" "$T/monitor.log" || fail "the notification does not say the mail was not delivered"
grep -q "5.1.1" "$T/monitor.log" || fail "the notification does not carry the server's reply"
expect_eq "bounce reports at the account" "$(rcpt_deliveries "$ACCOUNT")" 1
grep -l "Undelivered Mail Returned to Sender" "$SDIR"/mail/*.eml >/dev/null 2>&1 || fail "no bounce report stored"
grep -q "nobody@example.com.*5.1.1" "$SDIR"/mail/*.eml || fail "the bounce report does not name the recipient and the reply"
expect_count 1

check "without a session bus the failure is still recorded and reported by mail"
rm -rf "$SDIR/mail"/* "$Q"
queue_msg "to nobody again" nobody@example.com
DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent od_once
expect_eq "bounce reports at the account" "$(rcpt_deliveries "$ACCOUNT")" 1
expect_state_has $'^rcpt\tfailed\t[0-9]+\tnobody@example.com\t550 5.1.1'

check "a notification helper that hangs: killed within 5 s and reaped; the failure is recorded and reported by mail"
rm -rf "$SDIR/mail"/*
# outboxd runs the outbox-desktop beside its own executable: a copy of it with a stand-in.
mkdir -p "$T/libexec"
cp "$OD" "$T/libexec/outboxd"
printf '#!/bin/sh\necho "$$ $*" >%q\nexec sleep 60\n' "$T/helper.run" >"$T/libexec/outbox-desktop"
chmod 755 "$T/libexec/outbox-desktop"
queue_msg "to nobody, hung helper" nobody@example.com
start=$SECONDS
OD=$T/libexec/outboxd od_once
echo "    outboxd took $((SECONDS - start)) s"
[ $((SECONDS - start)) -le 8 ] || fail "outboxd took $((SECONDS - start)) s with a hanging helper"
read -r hpid hargs <"$T/helper.run" 2>/dev/null || fail "the helper was not run"
case ${hargs:-} in
"notify Mail not delivered Message "*"5.1.1"*) ;;
*) fail "the helper was run as: ${hargs:-}" ;;
esac
if [ -n "${hpid:-}" ] && kill -0 "$hpid" 2>/dev/null; then
	fail "the hanging helper still runs"
	kill -9 "$hpid"
fi
expect_eq "bounce reports at the account" "$(rcpt_deliveries "$ACCOUNT")" 1
expect_state_has $'^rcpt\tfailed\t[0-9]+\tnobody@example.com\t550 5.1.1'

finish
