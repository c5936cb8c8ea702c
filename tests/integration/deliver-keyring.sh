#!/bin/bash
# The password from a real Secret Service (gnome-keyring in a private D-Bus
# session), which outboxd asks through outbox-desktop and never maps libsecret
# or GIO itself: outbox's own attributes, msmtp's, a missing password, a locked
# keyring (held without a prompt, without connecting) and its unlocking; the
# service waiting on a locked keyring and sending once it is unlocked (within
# its 30 s recheck) or once the keyring daemon was restarted; no Secret
# Service at all.
if [ -z "${OUTBOX_TEST_IN_DBUS:-}" ]; then
	for p in dbus-run-session dbus-monitor gnome-keyring-daemon secret-tool gdbus; do
		command -v "$p" >/dev/null || { echo "SKIP: $p is not installed"; exit 77; }
	done
	# The bus daemon's own chatter (fd limits, activations) goes to a file.
	export OUTBOX_TEST_IN_DBUS=1
	exec dbus-run-session -- bash "$0" "$@" 2>&1
fi
. "${BASH_SOURCE%/*}/lib.sh"
. "${BASH_SOURCE%/*}/lib-deliver.sh"

KEYRING_PW=login-keyring-pw

secrets_pid() {
	gdbus call --session --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
		--method org.freedesktop.DBus.GetConnectionUnixProcessID org.freedesktop.secrets 2>/dev/null |
		sed -n 's/^(uint32 \([0-9]*\),)$/\1/p'
}
stop_keyring() {
	local p
	p=$(secrets_pid)
	[ -n "$p" ] && kill "$p" 2>/dev/null
	return 0
}
on_exit stop_keyring

login_locked() {
	gdbus call --session --dest org.freedesktop.secrets --object-path "$LOGIN" \
		--method org.freedesktop.DBus.Properties.Get org.freedesktop.Secret.Collection Locked
}

# Services the bus starts (the keyring, its prompter) get the test's HOME, never the real one.
gdbus call --session --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
	--method org.freedesktop.DBus.UpdateActivationEnvironment \
	"{'HOME': '$HOME', 'XDG_DATA_HOME': '$XDG_DATA_HOME', 'XDG_CONFIG_HOME': '$XDG_CONFIG_HOME', 'XDG_RUNTIME_DIR': '$XDG_RUNTIME_DIR', 'XDG_CACHE_HOME': '$HOME/.cache'}" >/dev/null ||
	skip "cannot set the D-Bus activation environment"
export XDG_CACHE_HOME=$HOME/.cache
echo -n "$KEYRING_PW" | gnome-keyring-daemon --unlock --components=secrets >/dev/null ||
	skip "gnome-keyring-daemon does not start here"
LOGIN=/org/freedesktop/secrets/collection/login
gdbus call --session --dest org.freedesktop.secrets --object-path /org/freedesktop/secrets \
	--method org.freedesktop.DBus.Properties.Get org.freedesktop.Secret.Service Collections |
	grep -q "'$LOGIN'" || skip "the keyring has no $LOGIN collection"

# Every method call to the Secret Service and its prompts, to see that outbox-desktop never asks to unlock.
dbus-monitor --session "type='method_call',destination='org.freedesktop.secrets'" \
	"type='method_call',interface='org.freedesktop.Secret.Prompt'" >"$T/dbus-monitor.log" 2>&1 &
_od_pids+=("$!")

start_server
write_config "account.password-command="

check "the password stored with outbox's attributes (service, address, host): delivered"
echo -n "$PW" | secret-tool store --label="outbox test" service outbox address "$ACCOUNT" host localhost ||
	fail "secret-tool store failed"
queue_msg "keyring outbox attributes"
od_once
expect_od_rc 0
expect_eq "messages stored" "$(stored)" 1
expect_eq "AUTH user" "$(json_of 1 auth_user 2>/dev/null)" "\"$ACCOUNT\""
expect_empty_queue
l=$(grep -rlF -- "$PW" "$HOME" 2>/dev/null)
[ -z "$l" ] || fail "the password is in a file under HOME: $l"

check "outboxd maps neither libsecret nor GIO: outbox-desktop, beside it, asks the keyring"
[ -x "${OD%/*}/outbox-desktop" ] || fail "no outbox-desktop next to $OD"
l=$(ldd "$OD" | grep -E 'lib(secret-1|gio-2\.0|gobject-2\.0)\.')
[ -z "$l" ] || fail "outboxd loads $(echo $l)"

check "msmtp's attributes (host, service=smtp, user): delivered"
secret-tool clear service outbox address "$ACCOUNT" host localhost
echo -n "$PW" | secret-tool store --label="msmtp" host localhost service smtp user "$ACCOUNT" ||
	fail "secret-tool store failed"
queue_msg "keyring msmtp attributes"
od_once
expect_od_rc 0
expect_eq "messages stored" "$(stored '^Subject: keyring msmtp')" 1
expect_empty_queue

check "no password in the keyring: held, no connection, nothing failed"
secret-tool clear host localhost service smtp user "$ACCOUNT"
queue_msg "keyring empty"
c=$(srv_count '^CONNECT$')
od_once 20
expect_od_rc 75
expect_eq "connections" "$(srv_count '^CONNECT$')" "$c"
expect_count 1
expect_state_lacks '^rcpt	(failed|sent)'
expect_no_account_hold
grep -q 'no password' "$T/od.err" || fail "the log does not say the password is missing"

check "a locked keyring: held without a prompt and without connecting; delivered once unlocked"
echo -n "$PW" | secret-tool store --label="outbox test" service outbox address "$ACCOUNT" host localhost ||
	fail "secret-tool store failed"
gdbus call --session --dest org.freedesktop.secrets --object-path /org/freedesktop/secrets \
	--method org.freedesktop.Secret.Service.Lock "['$LOGIN']" >/dev/null || fail "cannot lock the keyring"
login_locked | grep -q true || fail "the login collection did not lock"
: >"$T/dbus-monitor.log"
queue_msg "keyring locked"
c=$(srv_count '^CONNECT$')
start=$SECONDS
od_once 20
echo "    outboxd took $((SECONDS - start)) s with the keyring locked"
[ $((SECONDS - start)) -le 10 ] || fail "outboxd took $((SECONDS - start)) s with a locked keyring"
expect_od_rc 75
expect_eq "connections" "$(srv_count '^CONNECT$')" "$c"
expect_count 1
expect_state_lacks '^rcpt	(failed|sent)'
expect_no_account_hold
grep -q 'locked' "$T/od.err" || fail "the log does not say the keyring is locked"
sleep 0.3
grep -q "member=SearchItems" "$T/dbus-monitor.log" || fail "the D-Bus monitor saw no search by outbox-desktop: it cannot tell whether it prompted"
if grep -qE 'member=(Unlock|Prompt)' "$T/dbus-monitor.log"; then
	fail "outbox-desktop asked to unlock the keyring: $(grep -E 'member=(Unlock|Prompt)' "$T/dbus-monitor.log" | head -2)"
fi
login_locked | grep -q true || fail "the keyring was unlocked behind the user's back"
# The user unlocks the keyring (a new daemon, unlocked with the login password).
echo -n "$KEYRING_PW" | gnome-keyring-daemon --replace --unlock --components=secrets >/dev/null 2>&1
wait_for 5 sh -c "gdbus call --session --dest org.freedesktop.secrets --object-path $LOGIN --method org.freedesktop.DBus.Properties.Get org.freedesktop.Secret.Collection Locked 2>/dev/null | grep -q false" ||
	fail "the keyring did not unlock"
od_once
expect_od_rc 0
expect_eq "messages stored" "$(stored '^Subject: keyring locked')" 1
expect_empty_queue

# unlock_login: unlocks the login collection in the running keyring daemon,
# with its password, as the login manager does (no prompt).
unlock_login() {
	"$SPY" - "$KEYRING_PW" "$LOGIN" <<'PY'
import sys
from gi.repository import Gio, GLib
bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
r = bus.call_sync("org.freedesktop.secrets", "/org/freedesktop/secrets", "org.freedesktop.Secret.Service",
                  "OpenSession", GLib.Variant("(sv)", ("plain", GLib.Variant("s", ""))),
                  GLib.VariantType("(vo)"), Gio.DBusCallFlags.NONE, -1, None)
session = r.unpack()[1]
bus.call_sync("org.freedesktop.secrets", "/org/freedesktop/secrets",
              "org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface", "UnlockWithMasterPassword",
              GLib.Variant("(o(oayays))", (sys.argv[2], (session, b"", sys.argv[1].encode(), "text/plain"))),
              None, Gio.DBusCallFlags.NONE, -1, None)
PY
}

# start_service: outboxd as a service (idle-exit 2 s), its log in $T/svc.err.
start_service() {
	write_config "account.password-command=" "delivery.idle-exit=2s"
	: >"$T/svc.err"
	"$OD" >"$T/svc.out" 2>"$T/svc.err" &
	svc=$!
	_od_pids+=("$svc")
}

lock_login() {
	gdbus call --session --dest org.freedesktop.secrets --object-path /org/freedesktop/secrets \
		--method org.freedesktop.Secret.Service.Lock "['$LOGIN']" >/dev/null || fail "cannot lock the keyring"
}

check "outboxd as a service, keyring locked: holds without connecting, stays; unlocked as at login, the mail leaves within about 30 s"
lock_login
queue_msg "unlocked later"
c=$(srv_count '^CONNECT$')
start_service
wait_for 10 grep -q 'locked' "$T/svc.err" || fail "the service did not say the keyring is locked"
sleep 3	# longer than idle-exit: a held queue is not an idle one
kill -0 "$svc" 2>/dev/null || fail "the service left while mail waits for the keyring"
# outbox-desktop answered: outboxd mapped nothing of it, and reaped it.
if maps=$(cat "/proc/$svc/maps" 2>/dev/null) && [ -n "$maps" ]; then
	l=$(grep -oE 'lib(secret-1|gio-2\.0|gobject-2\.0)\.[^ ]*' <<<"$maps" | sort -u)
	[ -z "$l" ] || fail "the running outboxd maps $(echo $l)"
else
	echo "    (outboxd is not dumpable: its maps are for root to read)"
fi
l=$(pgrep -P "$svc")
[ -z "$l" ] || fail "outboxd has children left while it waits: $(ps -o pid=,stat=,args= -p "$(echo $l | tr ' ' ,)")"
expect_eq "connections while locked" "$(srv_count '^CONNECT$')" "$c"
if unlock_login; then
	login_locked | grep -q false || fail "the keyring did not unlock"
	unlocked=$SECONDS
	if wait_for 40 has_stored 1 '^Subject: unlocked later'; then
		echo "    sent $((SECONDS - unlocked)) s after the unlock"
	else
		fail "not sent within 40 s of the unlock"
	fi
else
	fail "cannot unlock the keyring through gnome-keyring's interface"
fi
kill "$svc" 2>/dev/null
wait "$svc" 2>/dev/null
sed 's/^/    | /' "$T/svc.err"
expect_empty_queue

check "outboxd as a service, keyring locked, then the keyring daemon restarted unlocked: the mail leaves at the next doorbell"
lock_login
queue_msg "new keyring daemon"
start_service
wait_for 10 grep -q 'locked' "$T/svc.err" || fail "the service did not say the keyring is locked"
echo -n "$KEYRING_PW" | gnome-keyring-daemon --replace --unlock --components=secrets >/dev/null 2>&1
wait_for 5 sh -c "gdbus call --session --dest org.freedesktop.secrets --object-path $LOGIN --method org.freedesktop.DBus.Properties.Get org.freedesktop.Secret.Collection Locked 2>/dev/null | grep -q false" ||
	fail "the new keyring daemon is not unlocked"
queue_msg "rings the doorbell"
wait_for 10 has_stored 1 '^Subject: new keyring daemon' || fail "not sent after the keyring daemon was replaced"
kill "$svc" 2>/dev/null
wait "$svc" 2>/dev/null
sed 's/^/    | /' "$T/svc.err"
expect_empty_queue

check "no Secret Service at all: held, no connection, no hang"
queue_msg "no secret service"
c=$(srv_count '^CONNECT$')
start=$SECONDS
DBUS_SESSION_BUS_ADDRESS=unix:path=$T/no-such-bus od_once 20
[ $((SECONDS - start)) -le 10 ] || fail "outboxd took $((SECONDS - start)) s without a Secret Service"
expect_od_rc 75
expect_eq "connections" "$(srv_count '^CONNECT$')" "$c"
expect_count 1
expect_state_lacks '^rcpt	(failed|sent)'
od_once
expect_od_rc 0
expect_empty_queue

finish
