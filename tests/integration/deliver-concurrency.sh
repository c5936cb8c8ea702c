#!/bin/bash
# Several outboxd at once (the service, outbox flush, sendmail -q, a timer)
# share the queue through per-message locks: every message goes out exactly
# once, also when one of them reaches a message just as another finishes it.
. "${BASH_SOURCE%/*}/lib.sh"
. "${BASH_SOURCE%/*}/lib-deliver.sh"

check "three outboxd --once at the same time on 60 messages: each message exactly once"
start_server
write_config
for i in $(seq 1 60); do
	queue_msg "concurrent $i"
done
pids=()
for k in 1 2 3; do
	"$OD" --once >/dev/null 2>"$T/conc$k.err" &
	pids+=("$!")
	_od_pids+=("$!")
done
for p in "${pids[@]}"; do
	wait "$p"
done
for i in $(seq 1 60); do
	n=$(stored "^Subject: concurrent $i"$'\r'"?\$")
	[ "$n" -eq 1 ] || fail "\"concurrent $i\" stored $n times"
done
expect_empty_queue
expect_no_tmp

check "a second outboxd that opened a message just before the first sent and removed it does not send it again"
if ldd "$OD" 2>/dev/null | grep -q libasan; then
	# The sanitizer's runtime must come first in the process: no LD_PRELOAD shim.
	echo "    not run: a sanitizer build cannot take the LD_PRELOAD shim this check needs"
	finish
fi
command -v cc >/dev/null || skip "no C compiler to build the flock delay"
# flock() delayed once, in the second outboxd only: it opens the message,
# then takes the lock after the first one has delivered and removed it.
cat >"$T/slowlock.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

int
flock(int fd, int op)
{
	static int (*real)(int, int);
	static int done;
	const char *ms = getenv("SLOW_FLOCK_MS");

	if (!real)
		real = (int (*)(int, int))dlsym(RTLD_NEXT, "flock");
	if (ms && (op & LOCK_EX) && !done++)
		usleep((useconds_t)atoi(ms) * 1000);
	return real(fd, op);
}
C
cc -shared -fPIC -o "$T/slowlock.so" "$T/slowlock.c" -ldl 2>"$T/cc.err" || skip "cannot build the flock delay: $(head -c 200 "$T/cc.err")"
queue_msg "opened by both"
LD_PRELOAD=$T/slowlock.so SLOW_FLOCK_MS=1500 "$OD" --once >/dev/null 2>"$T/slow.err" &
slow=$!
_od_pids+=("$slow")
# The slow one has connected and opened the message by now; the other delivers it.
wait_for 5 grep -q 'Trusted TLS' "$T/slow.err" || fail "the slow outboxd did not connect"
sleep 0.3
od_once
expect_eq "copies after the first outboxd" "$(stored '^Subject: opened by both')" 1
wait "$slow"
sed 's/^/    slow | /' "$T/slow.err"
expect_eq "copies after the second outboxd" "$(stored '^Subject: opened by both')" 1
grep -q 'cannot remove' "$T/slow.err" && fail "the second outboxd tried to remove a message it did not have"
expect_empty_queue
[ -z "$(ls -A "$Q/state")" ] || fail "a state file was left for a message no longer queued: $(ls "$Q/state")"

# A delivery that takes over an hour (a large message on a slow line) keeps
# the room it reserved for its state even when another outboxd starts and
# sweeps: only reservations nobody holds are stale.
check "the sweep keeps an hour-old state reservation of a message being delivered, removes an orphan one"
command -v flock >/dev/null || skip "flock(1) is needed"
queue_msg "long delivery"
id=$(msg_ids)
orphan=0000000000000000
printf 'x%.0s' $(seq 1 100) >"$Q/state/.$id.tmp"
cp "$Q/state/.$id.tmp" "$Q/state/.$orphan.tmp"
touch -d '2 hours ago' "$Q/state/.$id.tmp" "$Q/state/.$orphan.tmp"
flock -x "$Q/msg/$id" sleep 30 &
holder=$!
_od_pids+=("$holder")
wait_for 5 sh -c "! flock -n -s '$Q/msg/$id' true" || fail "the lock holder did not start"
od_once
[ -f "$Q/state/.$id.tmp" ] || fail "the reservation of the message being delivered was swept"
[ -f "$Q/state/.$orphan.tmp" ] && fail "the orphan reservation was kept"
[ -f "$Q/msg/$id" ] || fail "the locked message was touched"
pkill -P "$holder" sleep 2>/dev/null	# flock(1) holds the lock until its command ends
wait "$holder" 2>/dev/null

finish
