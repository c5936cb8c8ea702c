#!/bin/bash
# Queue IDs on the command line: a unique prefix names its message for every
# command; an ambiguous prefix is refused (64, "more than one"), an unknown
# ID gives 66, and paths, traversal and junk are refused with 64 without
# touching any file, inside the queue or out of it.
. "${BASH_SOURCE%/*}/lib-cli.sh" || exit 99

# two_messages: two messages queued back to back; $A and $B their IDs, $P
# their longest common prefix (IDs begin with the time of arrival).
two_messages() {
	queue_msg "first" bob@example.com
	queue_msg "second" carol@example.com
	local ids
	ids=($(msg_ids))
	[ "${#ids[@]}" -eq 2 ] || { fail "expected two messages, found ${#ids[@]}"; return 1; }
	A=${ids[0]} B=${ids[1]} P=
	local i
	for ((i = 0; i < 16; i++)); do
		[ "${A:i:1}" = "${B:i:1}" ] || break
		P+=${A:i:1}
	done
	echo "IDs $A and $B share the prefix [$P]"
}

check "a unique prefix names its message for show, hold, release, retry and delete"
two_messages
[ ${#P} -ge 1 ] || fail "two messages queued in the same second share no prefix: $A $B"
pa=${A:0:$((${#P} + 1))}
pb=${B:0:$((${#P} + 1))}
ob show "$pa"
expect_ob_rc 0
out_has "^ID: +$A\$"
out_has '^Subject: first$'
ob hold "$pb"
expect_ob_rc 0
grep -qx $'hold\tuser' "$Q/state/$B" 2>/dev/null || fail "hold $pb did not hold $B"
[ -e "$Q/state/$A" ] && fail "hold $pb touched $A too"
ob release "$pb"
expect_ob_rc 0
grep -q $'^hold\t' "$Q/state/$B" && fail "release $pb did not release $B"
ob retry "$pa"
expect_ob_rc 0
grep -q 'retry requested' "$Q/state/$A" 2>/dev/null || fail "retry $pa did not reach $A"
ob delete --yes "$pa"
expect_ob_rc 0
[ -e "$Q/msg/$A" ] && fail "delete --yes $pa left $A"
[ -e "$Q/msg/$B" ] || fail "delete --yes $pa removed $B"
ob show "$B"
expect_ob_rc 0

check "an ambiguous prefix: 64, 'more than one', nothing changed"
two_messages
if [ ${#P} -ge 1 ]; then
	for cmd in show hold release retry "delete --yes"; do
		ob $cmd "$P"
		[ "$rc" -eq 64 ] || fail "outbox $cmd $P (ambiguous) exited $rc, expected 64"
		grep -q 'more than one' "$T/err" || fail "outbox $cmd $P does not say 'more than one': $(cat "$T/err")"
	done
	[ -e "$Q/msg/$A" ] && [ -e "$Q/msg/$B" ] || fail "a message went away after an ambiguous prefix"
	[ -z "$(ls -A "$Q/state")" ] || fail "state files appeared after an ambiguous prefix: $(ls "$Q/state")"
else
	fail "two messages queued in the same second share no prefix: $A $B"
fi

step "an unknown ID or prefix: 66"
for id in ZZZZZZZZZZZZZZZZ ZZZ 0000000000000000; do
	for cmd in show hold release retry "delete --yes"; do
		ob $cmd "$id"
		[ "$rc" -eq 66 ] || fail "outbox $cmd $id (unknown) exited $rc, expected 66 ($(_show_last))"
	done
done

check "paths, traversal and junk: 64, and no file anywhere touched"
two_messages
# Canaries where a path taken from the command line could lead: beside the
# queue, above it, and at the absolute path used below.
mkdir -p "$T/outside" "$XDG_DATA_HOME/etc" "$HOME/.local/etc" "$Q/etc"
for f in "$T/outside/canary" "$XDG_DATA_HOME/etc/passwd" "$HOME/.local/etc/passwd" "$Q/etc/passwd" "$Q/msg/.hidden" "$Q/state/.hidden"; do
	echo "canary $f" >"$f"
done
touch -d '2001-01-01 00:00:00' "$T/outside/canary" "$XDG_DATA_HOME/etc/passwd" "$HOME/.local/etc/passwd" "$Q/etc/passwd" \
	"$Q/msg/.hidden" "$Q/state/.hidden"
# Every file under $T and /etc/passwd, with size, times and content.
snapshot() {
	{
		find "$T" -mindepth 1 -path "$T/out" -prune -o -path "$T/err" -prune -o -path "$T/snap.*" -prune -o \
			-printf '%p %s %T@ %m\n' | sort
		md5sum /etc/passwd "$T/outside/canary" "$XDG_DATA_HOME/etc/passwd" "$Q/etc/passwd"
		stat -c '%n %s %Y' /etc/passwd
	} 2>&1
}
snapshot >"$T/snap.before"
long=$(printf 'A%.0s' $(seq 100))
lower=${A,,}
junk=("../../etc/passwd" "../etc/passwd" "/etc/passwd" ".." "." "" "a/b" "$long" "$lower" "${A}X" "$A/" "/$A"
	"../msg/$A" "msg/$A" ".hidden" "$T/outside/canary" "${A:0:8}*" "${A:0:8} " " ${A:0:8}" "${A:0:8}"$'\n')
for id in "${junk[@]}"; do
	for cmd in show hold release retry; do
		ob $cmd "$id"
		[ "$rc" -eq 64 ] || fail "outbox $cmd [$id] exited $rc, expected 64 ($(_show_last))"
	done
	# delete runs only on IDs that cannot reach /etc/passwd even if validation were gone.
	case $id in
	/etc/passwd) continue ;;
	esac
	ob delete --yes "$id"
	[ "$rc" -eq 64 ] || fail "outbox delete --yes [$id] exited $rc, expected 64 ($(_show_last))"
done
snapshot >"$T/snap.after"
cmp -s "$T/snap.before" "$T/snap.after" ||
	fail "files changed: $(diff "$T/snap.before" "$T/snap.after" | head -8 | tr '\n' '|')"
[ -e "$Q/msg/$A" ] && [ -e "$Q/msg/$B" ] || fail "a message went away"

check "junk IDs are refused with 64 even when there is no queue yet"
for id in "../../etc/passwd" "" "a/b" "$long" ZZZ; do
	ob show "$id"
	want=64
	[ "$id" = ZZZ ] && want=66
	[ "$rc" -eq "$want" ] || fail "outbox show [$id] without a queue exited $rc, expected $want ($(_show_last))"
done
[ -e "$Q" ] && fail "show created the queue"

finish
