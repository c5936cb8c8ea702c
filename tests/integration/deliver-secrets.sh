#!/bin/bash
# The password never shows: not in a file under HOME, not in outboxd's log,
# argv or environment while it delivers, and outboxd is not dumpable (its
# /proc files belong to root, which is how the kernel marks a process that
# cannot be ptrace'd by its own user or dump core) with no core size.
. "${BASH_SOURCE%/*}/lib.sh"
. "${BASH_SOURCE%/*}/lib-deliver.sh"

# The password is computed by the command, so the configuration never holds it.
PWCMD='echo tQ9-zebra-$((5000 + 521))-Vq'
[ "$(sh -c "$PWCMD")" = "$PW" ] || { echo "the password-command does not give $PW" >&2; exit 99; }

# /proc/PID ownership shows dumpability only for a process not run by root:
# as root, run outboxd (and sendmail) as nobody.
if [ "$(id -u)" -eq 0 ]; then
	need setpriv
	USER_ID=65534
	AS_USER=(setpriv "--reuid=$USER_ID" "--regid=$USER_ID" --clear-groups --)
	chown -R $USER_ID:$USER_ID "$HOME" "$XDG_RUNTIME_DIR"
else
	USER_ID=$(id -u)
	AS_USER=()
fi

# The method: a plain process of that user owns its /proc files.
"${AS_USER[@]}" sleep 5 &
ctl=$!
_od_pids+=("$ctl")
sleep 0.2
[ "$(stat -c %u "/proc/$ctl/status")" = "$USER_ID" ] ||
	skip "/proc/PID/status of a process of uid $USER_ID is owned by $(stat -c %u "/proc/$ctl/status"): ownership does not show dumpability here"
kill "$ctl"

printf '%s\n' '[{"on": "data-end", "delay": 3, "times": 1}]' >"$T/script.json"
start_server --script "$T/script.json"
write_config "delivery.timeout=10s"
chown -R $USER_ID:$USER_ID "$HOME"

check "during a delivery: no password in outboxd's argv or environment; outboxd is not dumpable and has no core size"
printf 'Subject: secret check\nTo: bob@example.com\n\nbody\n' | "${AS_USER[@]}" "$SM" -i bob@example.com || fail "sendmail failed"
"${AS_USER[@]}" "$OD" --once >"$T/sec.out" 2>"$T/sec.err" &
od=$!
_od_pids+=("$od")
if wait_for 10 grep -q 'RULE 0 data-end' "$SDIR/log"; then
	uid=$(awk '/^Uid:/ {print $2}' "/proc/$od/status")
	expect_eq "outboxd's uid" "$uid" "$USER_ID"
	grep -qF -- "$PW" "/proc/$od/cmdline" && fail "the password is in outboxd's argv"
	grep -qF -- "$PW" "/proc/$od/environ" && fail "the password is in outboxd's environment"
	for f in status environ cmdline mem maps; do
		o=$(stat -c %u "/proc/$od/$f")
		[ "$o" = 0 ] || fail "/proc/PID/$f of outboxd belongs to uid $o: outboxd is dumpable"
	done
	grep -qE '^Max core file size +0 +0 ' "/proc/$od/limits" ||
		fail "core files are not off: $(grep '^Max core' "/proc/$od/limits")"
	# Nothing else of the user's (the password-command's children included) holds it in argv or environment.
	for p in /proc/[0-9]*; do
		[ "$(stat -c %u "$p" 2>/dev/null)" = "$USER_ID" ] || continue
		if grep -qF -- "$PW" "$p/cmdline" "$p/environ" 2>/dev/null; then
			fail "the password is in the argv or environment of $(tr '\0' ' ' <"$p/cmdline")"
		fi
	done
else
	fail "the delivery never reached the end of data"
fi
wait "$od"
rc=$?
sed 's/^/    | /' "$T/sec.err"
expect_eq "outboxd --once exit status" "$rc" 0
expect_eq "messages stored (the server checked the password)" "$(stored)" 1

check "after the delivery: no password in any file under HOME or XDG_RUNTIME_DIR, or in outboxd's log"
l=$(grep -rlF -- "$PW" "$HOME" "$XDG_RUNTIME_DIR" 2>/dev/null)
[ -z "$l" ] || fail "the password is in: $l"
grep -qF -- "$PW" "$T/sec.err" && fail "the password is in outboxd's log"
# A refused password is not logged either (the reply and the mechanism are).
PWCMD='echo wrong-$((6 * 7))-pw'
write_config
printf 'Subject: secret check 2\n\nbody\n' | "${AS_USER[@]}" "$SM" -i bob@example.com || fail "sendmail failed"
"${AS_USER[@]}" "$OD" --once >"$T/sec2.out" 2>"$T/sec2.err"
sed 's/^/    | /' "$T/sec2.err"
grep -qF 'wrong-42-pw' "$T/sec2.err" && fail "a refused password is in outboxd's log"
l=$(grep -rlF -- "wrong-42-pw" "$HOME" 2>/dev/null)
[ -z "$l" ] || fail "a refused password is in: $l"

finish
